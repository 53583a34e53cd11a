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

export type { ScopeSet, SmartContext, SmartGrantContext, SmartScope } from './scopes/types.js';
export { hasAllScopes, missingScopes, parseScopes, parseSmartScope } from './scopes/parse.js';
export { includesOnlyThePatient, PATIENT_COMPARTMENT } from './scopes/patient-compartment.js';
export {
  binaryReadDeferred,
  covers,
  describeRequired,
  grantsCreateOf,
  grantsSeeing,
  isUnrestrictedUserOrSystem,
  patientEverything,
  readsEveryType,
  smartGrants,
} from './scopes/grants.js';
