import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import { OWN_ONLY, type Reach } from '../fhir/reach.js';
import { parseQuery } from '../fhir/search-params.js';
import {
  insufficient,
  requireAddress,
  tokenMissing,
  requireDeclaredSize,
  requireTransport,
  termsOf,
  type Check,
  type CheckInput,
} from './checks.js';
import { requireWholeEntries, restsOnPatientScope } from './answer-guard.js';
import type { ReachedRule } from './policy.js';
import { RESOURCE_TYPE_NAMES } from '../fhir/resource-types.js';
import { covers, grantsSeeing, includesOnlyThePatient, missingScopes, patientEverything, readsEveryType, type ScopeSet } from './scopes.js';
import type { Settings } from './settings.js';

/**
 * The last check of the pipeline: every type the request reaches besides its own (`_include`
 * targets, `_revinclude` sources, `_type`, chains, `_has`, conditional criteria, operations that
 * return other types — fhir/reach.ts) must pass the rules that govern reading it, as a direct read
 * of it would: transport, client address, size, token, named scopes and SMART grants. The strictest
 * decides, because each rule must hold. A request that reaches nothing else (a plain read or write)
 * returns at the first comparison.
 */
export const requireReach: Check = (input, settings) => {
  ownReadRules(input, settings);
  requireWholeEntries(input.interaction, input.principal, input.rule);
  const reach = settings.policy.reachOf(input.interaction);
  if (reach === OWN_ONLY) return;
  if (reach.paged === true) return pageTypes(input, settings);
  for (const reached of settings.policy.reachedRules(reach)) checkReached(input, settings, reach, reached);
};

/** Writes whose answer is the resource written (or matched); their criteria, if any, are a search. */
const WRITES = new Set(['create', 'update', 'patch']);
/** The ways of reading a type: a rule written for the type and one of them is the operator's word on it. */
const READS = new Set(['read', 'vread', 'search', 'history']);

/**
 * The request's own type is read by more than its own interaction: history and vread list it, an
 * operation or a write's answer returns it, conditional criteria search it. Every rule that governs
 * reading the type holds for them too (transport, address, size, token, named scopes); a plain
 * write that one refuses goes ahead with its answer left out (Principal.withholdAnswer).
 */
function ownReadRules(input: CheckInput, settings: Settings): void {
  const i = input.interaction;
  const type = i.resourceType;
  if (type === undefined || (i.kind === 'delete' && i.conditional !== true)) return;
  // `{ interactions: [read], resourceTypes: [Patient] }` opening reads decides reads; a read that
  // only fell to a general rule is held to the type's other read rules.
  if (READS.has(i.kind) && settings.policy.namesType(input.rule, type)) return;
  for (const rule of settings.policy.readRulesOf(type)) {
    if (rule === input.rule) continue;
    try {
      checkRule(input, settings, rule);
    } catch (err) {
      if (!WRITES.has(i.kind) || i.conditional === true || !isGatewayError(err)) throw err;
      input.principal.withholdAnswer = true;
    }
  }
}

/** Transport, address, declared size, token and named scopes of `rule`, for the request in `input`. */
export function checkRule(input: CheckInput, settings: Settings, rule: ReachedRule['rule']): void {
  const other: CheckInput = { ...input, rule };
  // Synchronous checks: they throw or return nothing.
  requireTransport(other);
  requireAddress(other);
  void requireDeclaredSize(other, settings);
  const { auth, scopes, smart } = rule.require;
  if (input.principal.scopes === undefined && (auth || smart || scopes.length > 0)) {
    throw tokenMissing();
  }
  const missing = input.principal.scopes ? missingScopes(input.principal.scopes, scopes) : [];
  if (missing.length > 0) throw insufficient(missing.join(' '));
}

function checkReached(input: CheckInput, settings: Settings, reach: Reach, { type, rule }: ReachedRule): void {
  const what = reach.any ? `every resource type (${reach.why ?? 'unbounded'})` : type;
  try {
    if (rule !== input.rule) checkRule(input, settings, rule);
    // The answer to a patient app's own $everything is held to its compartment on the way out (answer-guard.ts).
    const { scopes, patient } = input.principal;
    const everything = scopes !== undefined && patient !== undefined && patientEverything(scopes, input.interaction, patient);
    if (rule.require.smart && !everything) {
      const set = input.principal.scopes;
      if (set === undefined) throw tokenMissing();
      if (
        !grantsSeeing(set, type) &&
        !(type === 'Patient' && (includesOnlyLaunchPatient(input) || (reach.compartmentOnly === 'Patient' && inLaunchCompartment(input))))
      ) {
        if (termsOf(set) === 'patient') throw outsideCompartment();
        throw insufficient(`user/${type}.s`);
      }
      // A Binary in an answer is content, governed by its own securityContext, which an answer
      // cannot be checked against Binary by Binary: only a grant that passes every such check
      // (what Binary search needs too, binary/binary-read.ts) may reach Binary, named or not.
      if ((type === 'Binary' || type === '*') && !readsEveryType(set)) {
        throw insufficient('user/*.r', 'Binary resources in the answer are governed by their securityContext');
      }
    }
  } catch (err) {
    // Say which reached type refused, so the caller can narrow the request (name an _include's
    // target, add _type) instead of guessing; the rule's name is the operator's and stays out.
    if (!isGatewayError(err)) throw err;
    const detail = `the request reaches ${what}${err.detail ? `; ${err.detail}` : ''}`;
    throw new GatewayError(err.code, detail, { headers: { ...err.headers } });
  }
}

/**
 * A page of an earlier search may carry any type; the gateway cannot tell which search it belongs
 * to (the page id is the server's). It is answered with only the types the caller may read, each
 * as a direct search of it would be judged — its rules (transport, address, token, named scopes)
 * and a SMART grant to see it (a patient/ scope's under the compartment guard on the way out);
 * Binary only with a read of every type, a stored Bundle (which carries any type) only with every
 * type readable and a grant to see every type. A caller who may read none is refused.
 */
function pageTypes(input: CheckInput, settings: Settings): void {
  const set = input.principal.scopes;
  const types = new Set<string>();
  for (const type of RESOURCE_TYPE_NAMES) {
    if (mayReadOnPage(input, settings, set, type)) types.add(type);
  }
  // A stored Bundle carries any type: only a caller who may read every one may have it.
  if (types.size < RESOURCE_TYPE_NAMES.length) types.delete('Bundle');
  if (types.size === 0)
    throw insufficient(
      set && termsOf(set) === 'patient' ? 'patient/Type.s' : 'user/Type.s',
      'a page of an earlier search carries only types the caller may read',
    );
  input.principal.pageTypes = types;
}

function mayReadOnPage(input: CheckInput, settings: Settings, set: ScopeSet | undefined, type: string): boolean {
  for (const rule of settings.policy.readRulesOf(type)) {
    if (rule !== input.rule) {
      try {
        checkRule(input, settings, rule);
      } catch (err) {
        if (isGatewayError(err)) return false;
        throw err;
      }
    }
    if (!rule.require.smart) continue;
    if (set === undefined) return false;
    // Binary is governed by its securityContext, a stored Bundle by every type's rules: neither by a patient scope.
    if (type === 'Binary') {
      if (!readsEveryType(set)) return false;
    } else if (type === 'Bundle') {
      if (!grantsSeeing(set, '*')) return false;
    } else if (!grantsSeeing(set, type) && !patientSees(set, input.principal.patient, type)) return false;
  }
  return true;
}

/** An unrestricted patient/ scope that lets the app see `type` (in its compartment: answer-guard.ts holds it there). */
function patientSees(set: ScopeSet, patient: string | undefined, type: string): boolean {
  return (
    patient !== undefined &&
    set.smart.some((s) => s.context === 'patient' && s.restrictions.length === 0 && (covers(s, type, 's') || covers(s, type, 'r')))
  );
}

/**
 * A patient-scoped search that includes only the launch patient (`Observation?patient=1&_include=Observation:patient:Patient`):
 * what it reaches besides its own type is that one Patient, which a patient scope covering Patient may see.
 */
function includesOnlyLaunchPatient({ interaction, principal }: CheckInput): boolean {
  const patient = principal.patient;
  const set = principal.scopes;
  if (patient === undefined || set === undefined) return false;
  if (
    !set.smart.some(
      (s) => s.context === 'patient' && s.restrictions.length === 0 && (covers(s, 'Patient', 's') || covers(s, 'Patient', 'r')),
    )
  ) {
    return false;
  }
  // Held to the compartment on the way out (answer-guard.ts), a compartment search pins its includes too.
  return includesOnlyThePatient(interaction, parseQuery(interaction.query), patient, restsOnPatientScope(set, interaction));
}

/**
 * `Patient/{launch patient}/Type`, reaching Patient by nothing but the compartment
 * (Reach.compartmentOnly): the compartment's owner is the patient the app acts for. An include or
 * chain that reaches Patient as well is judged as on any search.
 */
function inLaunchCompartment({ interaction, principal }: CheckInput): boolean {
  const c = interaction.compartment;
  return c !== undefined && c.resourceType === 'Patient' && principal.patient !== undefined && c.id === principal.patient;
}

/** In a patient app's own terms: what it may reach, not a user/ scope it will never hold. */
function outsideCompartment(): GatewayError {
  return new GatewayError(
    'INSUFFICIENT_SCOPE',
    "a patient-scoped token reaches only the launch patient's compartment: besides the type searched, only the patient itself may be included (_include=Type:patient or Type:subject:Patient on a search pinned to the patient)",
    { headers: { 'www-authenticate': 'Bearer error="insufficient_scope"' } },
  );
}
