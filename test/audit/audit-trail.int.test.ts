// The audit trail (issue 13) against the real FHIR upstream: every binary read, write, link,
// delete and refusal is one record in its own destination, with who, what, where, when, outcome
// and purpose, never a token or content; the same records reach the FHIR server as BALP
// AuditEvents; the access log stays apart.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { mintToken } from '../helpers/auth.js';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

t.test('binary reads, writes, links, deletes and refusals are audited, locally and as BALP AuditEvents', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const s = await stack(t, { audit: { destination: 'file', file, fhir: { enabled: true, batchSize: 3, flushMs: 50 } } });
  const token = await mintToken(s.key, { claims: { scope: 'user/*.cruds fhir.write', sub: 'Practitioner/dr-1', client_id: 'viewer-app' } });
  const auth = { authorization: `Bearer ${token}` };
  const records = () =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditRecord);
  const byReq = async (r: Response) => {
    const id = r.headers.get('x-request-id')!;
    return eventually(() => records().find((x) => x.reqId === id), `the audit record of ${id}`);
  };

  // A write: the blob stored and linked, with the upload's purpose.
  const created = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/pdf', 'x-file-metadata': '{"purpose":"patient_consent"}' },
    body: PDF(70_000),
  });
  t.equal(created.status, 201);
  await created.arrayBuffer();
  const binaryId = createdId(created);
  const blob = (await blobRefOf(s, binaryId))!.id;
  const write = await byReq(created);
  t.match(write, {
    audit: 1,
    action: 'create',
    outcome: 'success',
    status: 201,
    who: { sub: 'Practitioner/dr-1', clientId: 'viewer-app', issuer: /.+/ },
    what: {
      interaction: 'create',
      resourceType: 'Binary',
      blobs: [
        { action: 'write', blob },
        { action: 'link', blob, resource: `Binary/${binaryId}` },
      ],
    },
    where: { address: '127.0.0.1', proto: 'http' },
    purpose: 'patient_consent',
  });
  t.ok(Date.now() - Date.parse(write.time) < 60_000, 'when');
  t.ok(write.what.blobs[0].bytes! >= 70_000, 'bytes stored');

  // A raw read and a Range read: the bytes served.
  const read = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...auth, accept: 'application/pdf' } });
  const whole = Buffer.from(await read.arrayBuffer());
  t.match(await byReq(read), {
    action: 'read',
    outcome: 'success',
    what: { id: binaryId, blobs: [{ action: 'read', blob, bytes: whole.length }] },
  });
  const view = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...auth, accept: 'application/fhir+json' } });
  t.equal(view.status, 200);
  await view.arrayBuffer();
  t.match(
    await byReq(view),
    { what: { blobs: [{ action: 'read', blob, bytes: whole.length, resource: `Binary/${binaryId}` }] } },
    'the Binary as FHIR JSON',
  );
  const ranged = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...auth, accept: 'application/pdf', range: 'bytes=0-99' } });
  t.equal(ranged.status, 206);
  await ranged.arrayBuffer();
  t.match(await byReq(ranged), { status: 206, what: { blobs: [{ action: 'read', blob, bytes: 100 }] } });

  // A DocumentReference: its data stored on create, inflated on read.
  const doc = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  const docId = ((await doc.json()) as { id: string }).id;
  const docWrite = await byReq(doc);
  t.match(docWrite, {
    action: 'create',
    what: { resourceType: 'DocumentReference', blobs: [{ action: 'write' }, { action: 'link', resource: `DocumentReference/${docId}` }] },
  });
  const docRead = await fetch(`${s.gw.base}/DocumentReference/${docId}`, { headers: auth });
  await docRead.arrayBuffer();
  t.match(await byReq(docRead), {
    action: 'read',
    what: { blobs: [{ action: 'read', blob: docWrite.what.blobs[0].blob, resource: `DocumentReference/${docId}` }] },
  });

  // Refusals: a token without the scope; no token at all.
  const narrow = await mintToken(s.key, { claims: { scope: 'user/Observation.rs', sub: 'nurse-2' } });
  const refused = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { authorization: `Bearer ${narrow}` } });
  await refused.arrayBuffer();
  t.match(await byReq(refused), {
    outcome: 'refused',
    status: 403,
    code: 'INSUFFICIENT_SCOPE',
    who: { sub: 'nurse-2' },
    what: { blobs: [] },
  });
  const anonymous = await fetch(`${s.gw.base}/Binary/${binaryId}`);
  await anonymous.arrayBuffer();
  const anon = await byReq(anonymous);
  t.match(anon, { outcome: 'refused', status: 401, code: 'TOKEN_MISSING' });
  t.same(anon.who, {}, 'no one');

  // A refused upload (sniffed type does not match): stored, then deleted — both recorded.
  const wrong = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/pdf' },
    body: Buffer.from('GIF89a not a pdf at all'),
  });
  await wrong.arrayBuffer();
  const wrongRecord = await byReq(wrong);
  t.equal(wrongRecord.outcome, 'refused');

  // A delete of the Binary.
  const del = await fetch(`${s.gw.base}/Binary/${binaryId}`, { method: 'DELETE', headers: auth });
  await del.arrayBuffer();
  t.match(await byReq(del), { action: 'delete', outcome: 'success', what: { id: binaryId } });

  // Not binary-bearing and touching no blob: no record.
  const obs = await fetch(`${s.gw.base}/Observation?_count=1`, { headers: auth });
  await obs.arrayBuffer();
  await byReq(del);
  t.notOk(
    records().some((r) => r.reqId === obs.headers.get('x-request-id')),
    'an Observation search is not a binary access',
  );

  const text = readFileSync(file, 'utf8');
  t.notOk(text.includes(token.split('.')[2]) || text.includes(narrow.split('.')[2]), 'no token or signature in the trail');
  t.notOk(text.includes(PDF(0).toString('base64').slice(0, 8)), 'no content');
  t.notOk(
    s.gw.logs.lines.some((l) => l['audit'] === 1),
    'the access log and the audit trail are apart',
  );

  // The same records at the FHIR server, as BALP AuditEvents.
  const events = await eventually(async () => {
    const b = (await (await fetch(`${s.up.url}/AuditEvent?_count=100`)).json()) as { entry?: { resource: Record<string, unknown> }[] };
    const list = (b.entry ?? []).map((e) => e.resource);
    return list.length >= records().length ? list : undefined;
  }, 'the AuditEvents at the FHIR server');
  const created1 = events.find((e) => JSON.stringify(e).includes(blob) && e['action'] === 'C') as Record<string, any> | undefined;
  t.ok(created1, 'the create is an AuditEvent');
  t.match(created1, {
    meta: { profile: ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Create'] },
    type: { code: 'rest' },
    subtype: [{ code: 'create' }],
    outcome: '0',
    agent: [
      { requestor: true, who: { identifier: { value: 'Practitioner/dr-1' } }, network: { address: '127.0.0.1' } },
      { who: { identifier: { value: 'viewer-app' } } },
    ],
    entity: [
      { what: { display: 'Binary' } },
      {
        what: { identifier: { value: blob } },
        description: 'write',
        detail: [{ type: 'bytes' }, { type: 'purpose', valueString: 'patient_consent' }],
      },
      { what: { identifier: { value: blob } } },
    ],
  });
  t.notOk('purposeOfEvent' in created1!, "the uploader's stated purpose is said of the content, not made the purpose of the access");
  t.ok(
    events.some((e) => e['outcome'] === '4' && String(e['outcomeDesc']).includes('INSUFFICIENT_SCOPE')),
    'a refusal is an AuditEvent with outcome 4',
  );
});

t.test('by default the records share the gateway’s output as lines of their own shape', async (t) => {
  const s = await stack(t);
  const r = await upload(s, PDF(70_000), 'application/pdf');
  await r.arrayBuffer();
  const id = r.headers.get('x-request-id');
  const line = await eventually(() => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === id), 'the audit line');
  t.match(line, { action: 'create', outcome: 'success', what: { resourceType: 'Binary' } });
  t.notOk('msg' in line || 'level' in line, 'not a log line');
});

t.test('audit.destination off: nothing recorded', async (t) => {
  const s = await stack(t, { audit: { destination: 'off' } });
  const r = await upload(s, PDF(70_000), 'application/pdf');
  await r.arrayBuffer();
  await s.gw.accessLine(r.headers.get('x-request-id'));
  t.notOk(s.gw.logs.lines.some((l) => l['audit'] === 1));
});
