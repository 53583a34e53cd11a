/** What one classified interaction requires of SMART scopes. */

import type { Interaction } from '../../fhir/interaction.js';
import { RESOURCE_TYPE } from './parse.js';

export type Requirement =
  | { readonly kind: 'none' }
  | { readonly kind: 'never' }
  /** `letters` in cruds order, on `type` (a resource type, or `*` for system level). */
  | { readonly kind: 'letters'; readonly type: string; readonly letters: string };

export const NONE: Requirement = { kind: 'none' };
export const NEVER: Requirement = { kind: 'never' };
export const LETTER_ORDER = 'cruds';

/**
 * Single-letter requirements (what most requests need), built once per type and letter: every
 * request asks for one. Bounded, as types come from requests.
 */
const single = new Map<string, Map<string, Requirement>>();
const MAX_TYPES = 4096;

/** `letters(type, letter)` for one letter, without the allocations. */
export function one(type: string | undefined, letter: string): Requirement {
  const t = type ?? '*';
  let byLetter = single.get(t);
  if (!byLetter) {
    if (single.size >= MAX_TYPES) single.clear();
    byLetter = new Map();
    single.set(t, byLetter);
  }
  let req = byLetter.get(letter);
  if (!req) {
    req = letters(t, letter);
    byLetter.set(letter, req);
  }
  return req;
}

export function letters(type: string | undefined, ...required: string[]): Requirement {
  const t = type ?? '*';
  if (t !== '*' && !RESOURCE_TYPE.test(t)) return NEVER;
  const l = [...LETTER_ORDER].filter((x) => required.includes(x)).join('');
  return { kind: 'letters', type: t, letters: l };
}

export function requirement(request: Interaction): Requirement {
  const type = request.resourceType;
  let req: Requirement;
  switch (request.kind) {
    case 'capabilities':
      // The CapabilityStatement is public metadata: SMART clients read it before they hold a token.
      return NONE;
    case 'batch':
    case 'transaction':
      // Never granted as a whole: the caller authorizes a Bundle entry by entry, each entry being
      // classified into its own Interaction and checked here.
      return NEVER;
    case 'create':
      req = one(type, 'c');
      break;
    case 'read':
    case 'vread':
      if (type === undefined || request.id === undefined) return NEVER;
      req = one(type, 'r');
      break;
    case 'update':
    case 'patch':
      req = one(type, 'u');
      break;
    case 'delete':
      req = one(type, 'd');
      break;
    case 'search':
      req = one(type, 's');
      break;
    case 'history':
      // Instance history is a read of that resource's versions; type/system history lists
      // resources like a search does.
      if (request.id !== undefined && type === undefined) return NEVER;
      req = one(type, request.id !== undefined ? 'r' : 's');
      break;
    case 'operation':
      req = operationRequirement(request);
      break;
    default:
      return NEVER;
  }
  if (req.kind === 'letters' && request.conditional === true) {
    // Conditional create/update/delete/patch run a search on the server and reveal its outcome
    // (created vs. matched, 412 on multiple matches), so they also need `s` on the same type.
    return letters(req.type, ...req.letters, 's');
  }
  return req;
}

export function operationRequirement(request: Interaction): Requirement {
  const type = request.resourceType;
  switch (request.operation) {
    case 'binary-access-read':
    // A signed URL for content is a way to read it: the same right, checked when it is issued.
    case 'file-url':
      return one(type, 'r');
    case 'binary-access-write':
      return one(type, 'u');
    // The files GraphQL API (docs/graphql.md): the request itself grants nothing; each field is
    // authorized as what it does. An upload creates content for its type (DocumentReference, Media).
    case 'gateway-graphql':
      return NONE;
    case 'gateway-upload':
      return one(type, 'c');
    case 'everything':
      // $everything returns the whole compartment plus referenced resources of any type
      // (Practitioner, Medication, …), so it needs read and search on every type.
      return letters('*', 'r', 's');
    case undefined:
    case '':
      return NEVER;
    default:
      // An operation can read, write or delete anything its definition says; we do not know the
      // definitions, so only a grant of every letter on the type (system level: on `*`) covers it.
      return letters(type, 'c', 'r', 'u', 'd', 's');
  }
}
