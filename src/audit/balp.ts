import type { AuditRecord } from './record.js';

/**
 * An audit record as a FHIR R4 AuditEvent in the shape of IHE Basic Audit Log Patterns (BALP):
 * a RESTful event (`type` rest, `subtype` the interaction), the user and the client application
 * as agents (the user the requestor, with the client's network address), the gateway as source,
 * the resource acted on, the patient (when the token names one) and each blob as entities.
 * https://profiles.ihe.net/ITI/BALP/
 */
export function auditEvent(r: AuditRecord, observer: string): Record<string, unknown> {
  const profile = PROFILES[r.action];
  const entity: Record<string, unknown>[] = [];
  const { what, who } = r;
  if (what.resourceType)
    entity.push({
      what: what.id ? { reference: `${what.resourceType}/${what.id}` } : { display: what.resourceType },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' },
    });
  if (who.patient)
    entity.push({
      what: { reference: who.patient.includes('/') ? who.patient : `Patient/${who.patient}` },
      type: { system: ENTITY_TYPE, code: '1', display: 'Person' },
      role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
    });
  for (const b of what.blobs)
    entity.push({
      what: { identifier: { system: BLOB_SYSTEM, value: b.blob } },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      description: b.action,
      detail: [
        ...(b.bytes !== undefined ? [{ type: 'bytes', valueString: String(b.bytes) }] : []),
        ...(b.resource ? [{ type: 'resource', valueString: b.resource }] : []),
        ...(b.typeOverride ? [{ type: 'typeOverride', valueString: b.typeOverride }] : []),
        // What the uploader says the content is for: a statement about the object, not the purpose of this access.
        ...(b.action === 'write' && r.purpose ? [{ type: 'purpose', valueString: r.purpose }] : []),
      ],
    });
  for (const g of what.urls ?? [])
    entity.push({
      what: g.blob ? { identifier: { system: BLOB_SYSTEM, value: g.blob } } : { reference: g.resource },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      description: `signed URL issued${g.link ? ' (a link in the answer)' : ''}`,
      detail: [
        { type: 'url', valueString: g.url },
        { type: 'permission', valueString: g.permission },
        { type: 'expires', valueString: g.expiresAt },
        { type: 'via', valueString: g.via },
        ...(g.policy ? [{ type: 'policy', valueString: g.policy }] : []),
        ...(g.ip ? [{ type: 'ip', valueString: g.ip }] : []),
        { type: 'resource', valueString: g.resource },
        ...(g.path ? [{ type: 'path', valueString: g.path }] : []),
      ],
    });
  if (who.signedUrl)
    entity.push({
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      description: 'signed URL followed (no token)',
      detail: [
        { type: 'url', valueString: who.signedUrl.url },
        { type: 'key', valueString: who.signedUrl.keyId },
        ...(who.signedUrl.policy ? [{ type: 'policy', valueString: who.signedUrl.policy }] : []),
      ],
    });
  if (what.inline)
    entity.push({
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
      description: 'attachment data held inline by the FHIR server, sent in the answer',
      detail: [
        { type: 'attachments', valueString: String(what.inline.count) },
        { type: 'bytes', valueString: String(what.inline.bytes) },
      ],
    });
  const user = who.sub ?? who.system;
  return {
    resourceType: 'AuditEvent',
    ...(profile ? { meta: { profile: [profile] } } : {}),
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' },
    ...(what.interaction ? { subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: what.interaction }] } : {}),
    action: ACTION_CODES[r.action],
    recorded: r.time,
    outcome: r.outcome === 'success' ? '0' : r.outcome === 'refused' ? '4' : '8',
    ...(r.outcome !== 'success' ? { outcomeDesc: [r.outcome, r.status, r.code].filter((x) => x !== undefined).join(' ') } : {}),
    agent: [
      {
        type: {
          coding: [
            { system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP', display: 'information recipient' },
          ],
        },
        who: user ? { identifier: { ...(who.issuer ? { system: who.issuer } : {}), value: user } } : { display: 'anonymous' },
        requestor: true,
        ...(r.where ? { network: { address: r.where.address, type: '2' } } : {}),
      },
      ...(who.clientId
        ? [
            {
              type: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110150', display: 'Application' }] },
              who: { identifier: { value: who.clientId } },
              requestor: false,
            },
          ]
        : []),
    ],
    source: {
      observer: { display: observer },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    ...(entity.length ? { entity } : {}),
  };
}

const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
/** Blob ids are the gateway's own identifiers. */
const BLOB_SYSTEM = 'urn:fhir-binary-gateway:blob';
const ACTION_CODES = { create: 'C', read: 'R', update: 'U', delete: 'D', execute: 'E' } as const;
const BALP = 'https://profiles.ihe.net/ITI/BALP/StructureDefinition/';
const PROFILES: Readonly<Record<string, string | undefined>> = {
  create: `${BALP}IHE.BasicAudit.Create`,
  read: `${BALP}IHE.BasicAudit.Read`,
  update: `${BALP}IHE.BasicAudit.Update`,
  delete: `${BALP}IHE.BasicAudit.Delete`,
};
