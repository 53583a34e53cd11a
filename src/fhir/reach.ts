/**
 * What a request can reach: the resource types, besides its own, that its answer may carry or that
 * shape its answer. A per-type rule must hold for every one of them, not only for the type named in
 * the request line (`GET /Observation?_include=Observation:device:Device` returns Devices, and
 * `If-None-Exist: subject:Patient.name=Bob` answers 200 or 201 depending on Patients).
 *
 * Transport-independent and cheap on the common path: a request without a query (a plain read or
 * write) reaches nothing else and allocates nothing.
 */
import type { Interaction } from './interaction.js';
import { RESOURCE_TYPES } from './resource-types.js';
import { criteriaQuery, parseQuery, type QueryParam } from './search-params.js';

export interface Reach {
  /** True when the set cannot be bounded from the request: every type may be reached. */
  readonly any: boolean;
  /** The other types named (own type excluded); empty when `any`. */
  readonly types: ReadonlySet<string>;
  /** For `any`: what made the set unbounded, for the refusal message (never request data beyond a parameter name). */
  readonly why?: string;
  /**
   * A page of an earlier search (HAPI's `[base]?_getpages=…` next links): any type may come, but
   * the caller need not be entitled to all of them — its answer carries only the types it is
   * (security/reach.ts decides which, security/answer-guard.ts holds the answer to them).
   */
  readonly paged?: boolean;
  /**
   * A compartment search's owner type (`Patient` for `Patient/1/Observation`) when nothing but the
   * compartment reaches it: what is asked of it is only that the owner exists. Absent when an
   * include, chain or other parameter reaches that type too (then it is reached like any other).
   */
  readonly compartmentOnly?: string;
}

/** What an operation may return: its own type only, a fixed list, or anything. */
export type OperationReturns = 'own' | 'any' | readonly string[];

const NO_TYPES: ReadonlySet<string> = new Set();
export const OWN_ONLY: Reach = Object.freeze({ any: false, types: NO_TYPES });

function anyType(why: string): Reach {
  return { any: true, types: NO_TYPES, why };
}

const PAGE: Reach = Object.freeze({ any: true, types: NO_TYPES, why: 'a page of an earlier search (_getpages)', paged: true });

/** What a server's page link carries besides the page id (HAPI's paging parameters, and the formatting ones it repeats). */
const PAGING_PARAMS = new Set([
  '_getpages',
  '_getpagesoffset',
  '_pageId',
  '_count',
  '_pretty',
  '_bundletype',
  '_format',
  '_elements',
  '_summary',
]);

/**
 * `[base]?_getpages={id}&…`: a page of a search the server keeps. Only paging and formatting
 * parameters are allowed beside it; anything else makes it an ordinary system-level search.
 */
export function isPageRequest(i: Interaction): boolean {
  if (i.kind !== 'search' || i.resourceType !== undefined || i.compartment !== undefined || !i.query.includes('_getpages')) return false;
  const params = parseQuery(i.query);
  return params.filter((p) => p.name === '_getpages').length === 1 && params.every((p) => PAGING_PARAMS.has(p.name));
}

/**
 * Operations whose result types are known. `$everything`, `$graphql`, `$export` and
 * `$process-message` can return any type; the binary-access operations and the resource-level
 * housekeeping ones return the resource they are invoked on (or Parameters/OperationOutcome,
 * which carry no resource of another type). An operation not listed (and not declared in the
 * policy's `operations`) may return anything: its definition is the server's, not ours.
 */
export const BUILTIN_OPERATIONS: ReadonlyMap<string, OperationReturns> = new Map<string, OperationReturns>([
  ['binary-access-read', 'own'],
  ['binary-access-write', 'own'],
  ['file-url', 'own'],
  // The gateway's own files API (docs/graphql.md): its answers carry files, never other resources.
  ['gateway-graphql', 'own'],
  ['gateway-upload', 'own'],
  ['validate', 'own'],
  ['meta', 'own'],
  ['meta-add', 'own'],
  ['meta-delete', 'own'],
  ['everything', 'any'],
  ['graphql', 'any'],
  ['export', 'any'],
  ['process-message', 'any'],
]);

/** Parameters whose result or meaning cannot be bounded to named types. */
const UNBOUNDED: ReadonlySet<string> = new Set(['_filter', '_query']);

/**
 * The types `i` may reach besides its own. `operations` says what each operation returns (the
 * built-ins with the policy's declarations over them); an operation it does not name reaches any type.
 */
export function reachOf(i: Interaction, operations: ReadonlyMap<string, OperationReturns> = BUILTIN_OPERATIONS): Reach {
  // The CapabilityStatement ignores search parameters; a Bundle's entries are each classified and reached on their own.
  if (i.kind === 'capabilities' || i.kind === 'batch' || i.kind === 'transaction') return OWN_ONLY;
  if (i.query.length === 0 && i.criteria === undefined && !reachesByShape(i)) return OWN_ONLY;
  if (isPageRequest(i)) return PAGE;
  const types = new Set<string>();
  let why: string | undefined;
  const note = (w: string): void => {
    why ??= w;
  };
  const add = (type: string, from: string): void => {
    // A stored Bundle (document, collection, message) carries resources of any type, however it is reached.
    if (type === 'Bundle') note(`a stored Bundle (${from})`);
    else if (RESOURCE_TYPES.has(type)) types.add(type);
    else note(from);
  };

  if (i.kind === 'operation') {
    const returns = operations.get(i.operation ?? '');
    if (returns === undefined || returns === 'any') note(`$${i.operation ?? ''}`);
    else if (returns !== 'own') for (const t of returns) add(t, `$${i.operation ?? ''}`);
  }
  if (i.kind === 'history' && i.resourceType === undefined) note('system-level _history');
  // A stored Bundle (document, collection, message) carries resources of any type.
  if (i.resourceType === 'Bundle') note('a stored Bundle');
  if (postSearch(i)) note('POST _search');

  const params = parseQuery(i.query);
  if (i.kind === 'search' && i.resourceType === undefined && !params.some((p) => p.name === '_type')) {
    note('a system-level search without _type');
  }
  for (const p of params) paramReach(p, add, note);
  if (i.criteria !== undefined) for (const p of parseQuery(criteriaQuery(i.criteria))) paramReach(p, add, note);

  // `Device/1/Observation` is shaped by Device 1 (which must exist): its type is reached too.
  const owner = i.compartment?.resourceType;
  const ownerOnly = owner !== undefined && !types.has(owner);
  if (owner !== undefined) add(owner, 'a compartment search');
  if (why !== undefined) return anyType(why);
  // The own type named by a parameter stays: what an include, chain or `_has` returns or reveals
  // of it is not held to the search's own conditions (a restricted or patient scope's).
  if (types.size === 0) return OWN_ONLY;
  return ownerOnly && types.has(owner) ? { any: false, types, compartmentOnly: owner } : { any: false, types };
}

/** Whether `i` may reach other types even without parameters. */
function reachesByShape(i: Interaction): boolean {
  // System-level search and history list every type unless `_type` narrows them.
  return (
    i.kind === 'operation' ||
    i.resourceType === 'Bundle' ||
    postSearch(i) ||
    i.compartment !== undefined ||
    (i.resourceType === undefined && (i.kind === 'search' || i.kind === 'history'))
  );
}

/** Form-encoded POST _search parameters are in the body, which is not read here: assume the worst. */
function postSearch(i: Interaction): boolean {
  return i.kind === 'search' && i.method !== 'GET' && i.method !== 'HEAD';
}

function paramReach(p: QueryParam, add: (type: string, from: string) => void, note: (why: string) => void): void {
  // Names are case-sensitive in FHIR, but an upstream that is lenient (`_INCLUDE`, ` _include`)
  // would act on what a strict reading skips: the control parameters are recognised loosely.
  const base = p.base.trim().toLowerCase();
  switch (base) {
    case '_include': {
      // `Source:param:Target`; without Target the reference's targets are the server's to know.
      const parts = p.value.split(':');
      if (parts.length >= 3) add(parts[2], p.name);
      else note(`${p.name}=${p.value === '*' ? '*' : 'Source:param'} (name the target type: Source:param:Target)`);
      return;
    }
    case '_revinclude': {
      // `Source:param[:Target]`: the included resources are of type Source.
      const parts = p.value.split(':');
      if (p.value !== '*' && parts.length >= 2) add(parts[0], p.name);
      else note(`${p.name}=*`);
      return;
    }
    case '_type':
      for (const t of p.value.split(',')) add(t, '_type');
      return;
    case '_has':
      hasReach(p.name, add);
      // `_has:Observation:patient:device:Device.identifier`: a chain at its end reaches further.
      if (p.name.includes('.')) chainReach(p.name, add, note);
      return;
    case '_list':
      add('List', '_list');
      return;
    case '_contained':
      // `_contained=true|both` returns the container resources, of any type.
      if (p.value !== 'false') note('_contained');
      return;
    case '_sort':
      // A chained sort key (`device.identifier`) orders by another type's data.
      if (p.value.includes('.')) note('a chained _sort');
      return;
    default:
      if (UNBOUNDED.has(base)) {
        note(base);
        return;
      }
  }
  if (p.name.includes('.')) chainReach(p.name, add, note);
}

/** `_has:Type:ref:param`, possibly nested (`_has:A:r:_has:B:s:param`): each Type's data shapes the answer. */
function hasReach(name: string, add: (type: string, from: string) => void): void {
  const parts = name.split(':');
  for (let k = 0; k < parts.length; k++) if (parts[k].trim().toLowerCase() === '_has') add(parts[k + 1] ?? '', '_has');
}

/**
 * `subject:Patient.organization:Organization.name`: every link but the last names (or should name)
 * its target type, after its last `:`; a last link that is itself a `_has` reaches its types too.
 */
function chainReach(name: string, add: (type: string, from: string) => void, note: (why: string) => void): void {
  const links = name.split('.');
  for (let k = 0; k < links.length - 1; k++) {
    const colon = links[k].lastIndexOf(':');
    if (colon === -1) note('a chained parameter without a target type (write it as ref:Type.param)');
    else add(links[k].slice(colon + 1), 'a chained parameter');
  }
  const last = links[links.length - 1];
  if (last.includes('_has')) hasReach(last, add);
}
