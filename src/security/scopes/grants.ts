/** Deciding whether a scope set grants one classified interaction. */

import type { Interaction } from '../../fhir/interaction.js';
import { isPageRequest } from '../../fhir/reach.js';
import type { ScopeSet, SmartGrantContext, SmartScope } from './types.js';
import { FHIR_ID } from './parse.js';
import { compartmentReadDeferred, staysInPatientCompartment } from './patient-compartment.js';
import { parseQuery, type QueryParam } from '../../fhir/search-params.js';
import { requirement } from './requirement.js';

export function covers(scope: SmartScope, type: string, letter: string): boolean {
  return (scope.resourceType === '*' || scope.resourceType === type) && scope.permissions.includes(letter);
}

export function isUnrestrictedUserOrSystem(scope: SmartScope): boolean {
  return scope.context !== 'patient' && scope.restrictions.length === 0;
}

/**
 * Whether the scopes grant the interaction. Scopes are a union (OR): for `user/` and `system/`
 * unrestricted scopes, the letters of all scopes covering the type are pooled (`user/Patient.cr`
 * plus `user/*.uds` cover a request needing `cruds` on Patient). A restricted or `patient/` scope
 * is never pooled: it must, on its own, hold the single letter the request needs and satisfy its
 * own condition. Requests needing several letters (operations, conditional writes) are therefore
 * granted only by unrestricted `user/`/`system/` scopes.
 */
export function smartGrants(set: ScopeSet, request: Interaction, ctx: SmartGrantContext = {}): boolean {
  const req = requirement(request);
  if (req.kind === 'none') return true;
  if (req.kind === 'never') return false;

  const pooled = pooledLetters(set, req.type);
  if (hasAll(pooled, req.letters)) return true;
  const patient = typeof ctx.patient === 'string' && FHIR_ID.test(ctx.patient) ? ctx.patient : undefined;
  // A page of an earlier search: any scope that may see some type may ask for it; its answer
  // carries only the types the caller may see (security/reach.ts, security/answer-guard.ts).
  if (isPageRequest(request)) return set.smart.some((s) => mayPage(s, patient));
  const params = parseQuery(typeof request.query === 'string' ? request.query : '');
  if (patient !== undefined && patientEverything(set, request, patient)) return true;
  if (req.letters.length !== 1) return false;

  const letter = req.letters;
  for (const s of set.smart) {
    if (isUnrestrictedUserOrSystem(s) || !covers(s, req.type, letter)) continue;
    // A restricted scope grants only a search (it says which search results may be seen; it says
    // nothing about a read, write or operation, whose target we cannot check here).
    if (s.restrictions.length > 0 && !(request.kind === 'search' && satisfiesRestrictions(s, params))) continue;
    if (
      s.context === 'patient' &&
      (patient === undefined ||
        !(
          staysInPatientCompartment(request, params, patient, req.type) ||
          (ctx.deferBinaryRead === true && binaryReadDeferred(request)) ||
          (ctx.deferCompartmentRead === true && compartmentReadDeferred(request))
        ))
    ) {
      continue;
    }
    return true;
  }
  return false;
}

/**
 * Whether the scopes grant creating a `type` resource the gateway itself writes and sees whole (the
 * files API's createDocumentReference / createMedia, and uploads for them): an unrestricted
 * `user/` or `system/` scope with `c`, or an unrestricted `patient/` one with a launch patient —
 * whose compartment the caller then checks against the resource. A restricted scope grants a
 * search only, as everywhere (its condition says nothing of a write's content); a `patient/` scope
 * without a patient grants nothing.
 */
export function grantsCreateOf(set: ScopeSet, type: string, patient: unknown): boolean {
  const launch = typeof patient === 'string' && FHIR_ID.test(patient);
  return set.smart.some((s) => s.restrictions.length === 0 && covers(s, type, 'c') && (s.context !== 'patient' || launch));
}

/** An unrestricted scope that sees some type (a patient/ one only with a launch patient): a restricted one's condition cannot hold for a page. */
function mayPage(s: SmartScope, patient: string | undefined): boolean {
  if (s.restrictions.length > 0 || (s.context === 'patient' && patient === undefined)) return false;
  return s.permissions.includes('s') || s.permissions.includes('r');
}

/**
 * `Patient/{launch patient}/$everything` with a `patient/` scope reading and searching every type:
 * the answer is the patient's record, held on the way out to the patient's compartment
 * (security/answer-guard.ts) rather than judged from the request, which cannot bound it.
 */
export function patientEverything(set: ScopeSet, request: Interaction, patient: string): boolean {
  if (request.kind !== 'operation' || request.operation !== 'everything' || request.resourceType !== 'Patient' || request.id !== patient) {
    return false;
  }
  // Only a patient app (every SMART scope patient/): its answers are the ones held to the compartment.
  if (!set.smart.every((s) => s.context === 'patient')) return false;
  return set.smart.some(
    (s) =>
      s.context === 'patient' &&
      s.restrictions.length === 0 &&
      s.resourceType === '*' &&
      s.permissions.includes('r') &&
      s.permissions.includes('s'),
  );
}

function hasAll(pooled: ReadonlySet<string>, letters: string): boolean {
  for (let i = 0; i < letters.length; i++) if (!pooled.has(letters[i])) return false;
  return true;
}

/** Pooled letters of a token's scope set, by type: the same token asks about the same few types request after request. */
const pooledByType = new WeakMap<ScopeSet, Map<string, ReadonlySet<string>>>();

/** The letters the unrestricted user/ and system/ scopes grant on `type`, pooled (see smartGrants). */
function pooledLetters(set: ScopeSet, type: string): ReadonlySet<string> {
  let byType = pooledByType.get(set);
  if (!byType) {
    byType = new Map();
    pooledByType.set(set, byType);
  }
  let pooled = byType.get(type);
  if (pooled) return pooled;
  const letters = new Set<string>();
  for (const s of set.smart) {
    if (isUnrestrictedUserOrSystem(s) && (s.resourceType === '*' || s.resourceType === type)) {
      for (const l of s.permissions) letters.add(l);
    }
  }
  pooled = letters;
  // Types come from requests; a token is only ever asked about valid resource types, but bound it anyway.
  if (byType.size >= 1024) byType.clear();
  byType.set(type, pooled);
  return pooled;
}

/**
 * What the request needs, for the error detail shown to clients, e.g. `user/Observation.r` or
 * `user/*.cruds`: the unrestricted user-level grant that would suffice for the request's own type
 * (the types it reaches besides are checked, and named, by security/reach.ts). Never includes token content.
 */
export function describeRequired(request: Interaction, terms: 'patient' | 'user' = 'user'): string {
  const req = requirement(request);
  if (req.kind === 'none') return 'no scope';
  if (req.kind === 'never') {
    return request.kind === 'batch' || request.kind === 'transaction' ? 'scopes for each Bundle entry' : 'no scope grants this request';
  }
  return `${terms}/${req.type}.${req.letters}`;
}

/**
 * Whether the scopes let the caller see resources of `type` (`*`: of every type) in an answer to
 * a request on another type: an unrestricted `user/` or `system/` grant of `s` or `r`. A `patient/`
 * or restricted scope says which resources of the type may be seen, which a request on another
 * type cannot be held to before its answer is read.
 */
export function grantsSeeing(set: ScopeSet, type: string): boolean {
  if (type === '*') {
    return set.smart.some(
      (s) => isUnrestrictedUserOrSystem(s) && s.resourceType === '*' && (s.permissions.includes('s') || s.permissions.includes('r')),
    );
  }
  const pooled = pooledLetters(set, type);
  return pooled.has('s') || pooled.has('r');
}

/** An unrestricted `user/` or `system/` read of every type: every Binary securityContext check passes on it. */
export function readsEveryType(set: ScopeSet): boolean {
  return set.smart.some((s) => isUnrestrictedUserOrSystem(s) && s.resourceType === '*' && s.permissions.includes('r'));
}

/**
 * v2 restrictions (`patient/Observation.rs?category=laboratory`): the search must carry each
 * restriction parameter exactly once, with exactly the scope's value, and no modified or chained
 * variant of it (`category:not=…`, `category:missing=…`). Extra parameters are fine: FHIR search
 * ANDs them, which only narrows.
 */
export function satisfiesRestrictions(scope: SmartScope, params: readonly QueryParam[]): boolean {
  for (const [name, value] of scope.restrictions) {
    const same = params.filter((p) => p.base === name);
    if (same.length !== 1) return false;
    const p = same[0];
    if (p === undefined || p.name !== name || p.value !== value || p.value.includes(',')) return false;
  }
  return true;
}

/**
 * A Binary belongs to no compartment; its `securityContext` says which resource governs it. A
 * patient-scoped read of a Binary is therefore let through to the binary plane, which owns every
 * such read and serves it only when the Binary's securityContext is in the patient's compartment
 * (src/security/security-context.ts); a Binary without one is refused there.
 */
export function binaryReadDeferred(request: Interaction): boolean {
  if (request.resourceType !== 'Binary' || request.id === undefined) return false;
  return (
    request.kind === 'read' ||
    request.kind === 'vread' ||
    (request.kind === 'operation' && (request.operation === 'binary-access-read' || request.operation === 'file-url'))
  );
}
