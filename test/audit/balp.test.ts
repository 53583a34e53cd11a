import t from 'tap';
import { auditEvent } from '../../src/audit/balp.js';
import { actionOf, whoOf, type AuditRecord } from '../../src/audit/record.js';

const base: AuditRecord = {
  audit: 1,
  time: '2026-12-06T10:00:00.000Z',
  reqId: 'r1',
  action: 'read',
  outcome: 'success',
  who: {},
  what: { blobs: [] },
};

t.test('BALP AuditEvent: outcomes, the patient, a blob, an anonymous caller', async (t) => {
  const ok = auditEvent(
    {
      ...base,
      who: { sub: 'u1', issuer: 'https://idp', patient: 'p-9' },
      what: {
        interaction: 'vread',
        resourceType: 'DocumentReference',
        id: 'd1',
        blobs: [{ action: 'read', blob: 'b1', bytes: 10, resource: 'DocumentReference/d1' }],
      },
      where: { address: '10.0.0.1', proto: 'https' },
    },
    'gw',
  );
  t.match(ok, {
    resourceType: 'AuditEvent',
    meta: { profile: [/IHE\.BasicAudit\.Read$/] },
    subtype: [{ code: 'vread' }],
    action: 'R',
    outcome: '0',
    agent: [{ who: { identifier: { system: 'https://idp', value: 'u1' } }, network: { address: '10.0.0.1', type: '2' } }],
    source: { observer: { display: 'gw' } },
    entity: [
      { what: { reference: 'DocumentReference/d1' } },
      { what: { reference: 'Patient/p-9' }, role: { code: '1' } },
      {
        what: { identifier: { value: 'b1' } },
        detail: [
          { type: 'bytes', valueString: '10' },
          { type: 'resource', valueString: 'DocumentReference/d1' },
        ],
      },
    ],
  });
  t.equal((ok['agent'] as unknown[]).length, 1, 'no client application agent without a client id');
  t.notOk('outcomeDesc' in ok);

  const refused = auditEvent({ ...base, outcome: 'refused', status: 401, code: 'TOKEN_MISSING' }, 'gw');
  t.match(refused, { outcome: '4', outcomeDesc: 'refused 401 TOKEN_MISSING', agent: [{ who: { display: 'anonymous' } }] });
  t.notOk('entity' in refused, 'nothing named, no entities');
  t.match(auditEvent({ ...base, outcome: 'failed', status: 502 }, 'gw'), { outcome: '8', outcomeDesc: 'failed 502' });
  t.match(auditEvent({ ...base, outcome: 'aborted', status: 499 }, 'gw'), { outcome: '8' });
  const execute = auditEvent({ ...base, action: 'execute', who: { system: 'sweeper' }, what: { change: 'expire', blobs: [] } }, 'gw');
  t.match(execute, { action: 'E', agent: [{ who: { identifier: { value: 'sweeper' } } }] });
  t.notOk('meta' in execute, 'no BALP profile for an execute');
  t.match(auditEvent({ ...base, who: { patient: 'Patient/p-1' }, what: { resourceType: 'Binary', blobs: [] } }, 'gw'), {
    entity: [{ what: { display: 'Binary' } }, { what: { reference: 'Patient/p-1' } }],
  });
});

t.test('who and what action a request is', async (t) => {
  t.same(whoOf({ sub: 's', azp: 'a', iss: 'i' }, undefined), { sub: 's', clientId: 'a', issuer: 'i' });
  t.same(whoOf({ cid: 'c', sub: 7 }, 'p'), { clientId: 'c', patient: 'p' }, 'only strings');
  t.same(whoOf(undefined, undefined), {});
  t.equal(whoOf({ sub: 'x'.repeat(1000) }, undefined).sub!.length, 256, 'bounded');
  t.equal(actionOf(undefined, 'GET'), 'read');
  t.equal(actionOf(undefined, 'POST'), 'execute');
  t.equal(actionOf({ kind: 'patch', method: 'PATCH', path: 'X/1', query: '' }, 'PATCH'), 'update');
});

t.test('BALP AuditEvent: signed URLs handed out are entities naming the URL; a follow names the URL it came by', async (t) => {
  const issued = auditEvent(
    {
      ...base,
      action: 'execute',
      who: { sub: 'u1' },
      what: {
        interaction: 'operation',
        operation: 'file-url',
        resourceType: 'DocumentReference',
        id: 'd1',
        blobs: [],
        urls: [
          {
            url: 'ab12cd34ef560789',
            resource: 'DocumentReference/d1',
            blob: 'b1',
            permission: 'r',
            expiresAt: '2026-12-06T10:15:00.000Z',
            via: 'gateway',
          },
          {
            url: '0011223344556677',
            resource: 'DocumentReference/d1',
            path: 'DocumentReference.content[0].attachment',
            permission: 'w',
            expiresAt: '2026-12-06T10:15:00.000Z',
            via: 'gateway',
            link: true,
          },
        ],
      },
    },
    'gw',
  );
  t.match(issued, {
    entity: [
      { what: { reference: 'DocumentReference/d1' } },
      {
        what: { identifier: { value: 'b1' } },
        description: 'signed URL issued',
        detail: [
          { type: 'url', valueString: 'ab12cd34ef560789' },
          { type: 'permission', valueString: 'r' },
          { type: 'expires', valueString: '2026-12-06T10:15:00.000Z' },
          { type: 'via', valueString: 'gateway' },
          { type: 'resource', valueString: 'DocumentReference/d1' },
        ],
      },
      {
        what: { reference: 'DocumentReference/d1' },
        description: 'signed URL issued (a link in the answer)',
        detail: [{ valueString: '0011223344556677' }, { valueString: 'w' }, {}, {}, {}, { type: 'path' }],
      },
    ],
  });
  const followed = auditEvent({ ...base, who: { signedUrl: { keyId: 'k1', policy: 'downloads', url: 'ab12cd34ef560789' } } }, 'gw');
  t.match(followed, {
    agent: [{ who: { display: 'anonymous' } }],
    entity: [
      {
        description: 'signed URL followed (no token)',
        detail: [
          { type: 'url', valueString: 'ab12cd34ef560789' },
          { type: 'key', valueString: 'k1' },
          { type: 'policy', valueString: 'downloads' },
        ],
      },
    ],
  });
});
