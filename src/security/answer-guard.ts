import { GatewayError } from '../errors/catalogue.js';
import type { Interaction } from '../fhir/interaction.js';
import { parseQuery } from '../fhir/search-params.js';
import { mayNamePatient, PATIENT_COMPARTMENT_PATHS, referencedPatient } from '../fhir/patient-compartment-elements.js';
import type { Reach } from '../fhir/reach.js';
import type { EntryGuard, Verdict } from '../rewrite/params.js';
import { termsOf, type Principal } from './checks.js';
import type { EffectiveRule } from './policy.js';
import { covers, grantsSeeing, type ScopeSet } from './scopes.js';

/**
 * Defence in depth on the way out: which entries of a Bundle answer the caller is entitled to
 * (rewrite/inflate.ts holds each entry until this decides, and drops the others, adding one
 * OperationOutcome entry that says how many). Two checks, each only where it applies:
 *
 * - **types**: a search or history whose reach is bounded carries only its own type and the
 *   types it reached (security/reach.ts authorized those); anything else the upstream sent is dropped;
 * - **the patient compartment**: for a patient app (every SMART scope `patient/`), the launch
 *   patient's Patient, resources in the patient's compartment (a reference to the patient below
 *   an element that places the type in it), and resources outside any compartment that its scopes
 *   cover and that name no other patient. Binary (governed by securityContext) is dropped.
 *
 * Undefined for every other request: a plain read or an unrestricted search pays nothing.
 */
export function answerGuard(i: Interaction, principal: Principal, rule: EffectiveRule, reach: Reach): EntryGuard | undefined {
  // Only listings carry entries: reads and writes return first, at no cost.
  if (i.kind !== 'search' && i.kind !== 'history' && i.kind !== 'operation') return undefined;
  // A page of an earlier search carries only the types the caller may read (security/reach.ts).
  const types =
    reach.paged === true
      ? principal.pageTypes
      : (i.kind === 'search' || i.kind === 'history') && !reach.any
        ? entitledTypes(i, reach)
        : undefined;
  const scopes = principal.scopes;
  const patientApp = rule.require.smart && scopes !== undefined && principal.patient !== undefined && restsOnPatientScope(scopes, i);
  if (types === undefined && !patientApp) return undefined;
  const patient = patientApp ? principal.patient : undefined;
  const mayRead = (type: string) =>
    scopes?.smart.some((s) => s.context === 'patient' && (covers(s, type, 'r') || covers(s, type, 's'))) ?? false;
  // A page names no type of its own: a type a user/ or system/ scope sees is that grant's, not held to the compartment.
  const userSees =
    reach.paged === true && scopes !== undefined ? (type: string) => !CARRIERS.has(type) && grantsSeeing(scopes, type) : undefined;
  return new Guard(types, patient, mayRead, userSees);
}

/**
 * `_elements` (Medplum also reads `_fields`) and `_summary=true|text` have the upstream leave out elements — among them the very
 * references an answer held to a patient's compartment is judged by (a resource outside any
 * compartment is sent when it names no other patient): such a listing is refused. `_summary`
 * `count`, `data` and `false` keep every reference.
 */
const ELEMENT_FILTERS: ReadonlySet<string> = new Set(['_elements', '_fields']);

export function requireWholeEntries(i: Interaction, principal: Principal, rule: EffectiveRule): void {
  if (i.kind !== 'search' && i.kind !== 'history' && i.kind !== 'operation') return;
  const bodied = i.method !== 'GET' && i.method !== 'HEAD';
  if (!bodied && !/_elements|_fields|_summary|%/i.test(i.query)) return;
  const scopes = principal.scopes;
  if (!rule.require.smart || scopes === undefined || principal.patient === undefined || !restsOnPatientScope(scopes, i)) return;
  // A POSTed operation's parameters (a form body, which servers read as query parameters) are not
  // read here, so they could strip elements unseen: such a listing puts its parameters in the URL.
  if (bodied) {
    throw new GatewayError(
      'INSUFFICIENT_SCOPE',
      `a patient-scoped ${i.kind} must be sent with GET, its parameters in the URL: parameters in a body are not checked`,
      { headers: { 'www-authenticate': 'Bearer error="insufficient_scope"' } },
    );
  }
  for (const p of parseQuery(i.query)) {
    const name = p.base.trim().toLowerCase();
    if (ELEMENT_FILTERS.has(name) || (name === '_summary' && !['count', 'data', 'false'].includes(p.value.trim().toLowerCase()))) {
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        `a patient-scoped listing cannot use ${name}: it would leave out the references that tie each entry to the patient`,
        { headers: { 'www-authenticate': 'Bearer error="insufficient_scope"' } },
      );
    }
  }
}

/**
 * Whether the request may have been granted by a patient/ scope: a patient app, or a token mixing
 * patient/ with user/ or system/ scopes that do not themselves let it see the type. Such an answer
 * is held to the patient's compartment (an upstream that ignored the patient pin would otherwise
 * answer with other patients' data).
 */
export function restsOnPatientScope(scopes: ScopeSet, i: Interaction): boolean {
  if (termsOf(scopes) === 'patient') return true;
  if (!scopes.smart.some((s) => s.context === 'patient')) return false;
  return !grantsSeeing(scopes, i.resourceType ?? '*');
}

function entitledTypes(i: Interaction, reach: Reach): ReadonlySet<string> | undefined {
  // A system-level search or history names its types only through reach (`_type`).
  const own = i.resourceType;
  if (own === undefined && reach.types.size === 0) return undefined;
  const types = new Set(reach.types);
  if (own !== undefined) types.add(own);
  return types;
}

/** Binary is governed by its securityContext; a Bundle or Parameters could carry anything. */
const CARRIERS: ReadonlySet<string> = new Set(['Binary', 'Bundle', 'Parameters']);

class Guard implements EntryGuard {
  constructor(
    private readonly types: ReadonlySet<string> | undefined,
    private readonly patient: string | undefined,
    private readonly mayRead: (type: string) => boolean,
    private readonly userSees?: (type: string) => boolean,
  ) {}

  type(type: string): Verdict {
    // The upstream's own notes (search mode `outcome`) are not data.
    if (type === 'OperationOutcome') return 'admit';
    if (this.types && !this.types.has(type)) return 'drop';
    if (this.patient === undefined || this.userSees?.(type) === true) return 'admit';
    if (CARRIERS.has(type)) return 'drop';
    if (type === 'Patient' || Object.hasOwn(PATIENT_COMPARTMENT_PATHS, type)) return undefined;
    return this.mayRead(type) ? undefined : 'drop';
  }

  id(type: string, id: string): Verdict {
    if (this.patient === undefined || type !== 'Patient') return undefined;
    return id === this.patient ? 'admit' : 'drop';
  }

  reference(type: string, path: string, reference: string): Verdict {
    if (this.patient === undefined || type === 'Patient') return undefined;
    const mine = referencedPatient(reference) === this.patient;
    if (Object.hasOwn(PATIENT_COMPARTMENT_PATHS, type)) return mine && PATIENT_COMPARTMENT_PATHS[type].includes(path) ? 'admit' : undefined;
    // Outside any compartment: a resource that (may) name another patient is that patient's data too.
    return !mine && mayNamePatient(reference) ? 'drop' : undefined;
  }

  end(type: string | undefined): 'admit' | 'drop' {
    if (type === undefined || this.patient === undefined) return 'admit';
    if (type === 'Patient' || Object.hasOwn(PATIENT_COMPARTMENT_PATHS, type)) return 'drop';
    return 'admit';
  }
}
