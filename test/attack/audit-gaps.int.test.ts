// Attack 13: binary accesses the audit trail does not record, or records without the blob.
import http from 'node:http';
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { createdId, PDF, stack, upload, uploadPdf, type Stack } from '../helpers/binary-stack.js';
import { pdfDocument, postDocument } from '../helpers/lifecycle.js';

const audits = (s: Stack) => s.gw.logs.lines.filter((l) => l['audit'] === 1) as unknown as AuditRecord[];
const settle = () => new Promise((r) => setTimeout(r, 300));

t.test('a Binary read as FHIR JSON serves the blob base64-encoded: its record names the blob read', async (t) => {
  const s = await stack(t);
  const { id: binaryId, blob } = await uploadPdf(s);
  for (const q of ['?_format=json', '']) {
    const r = await fetch(`${s.gw.base}/Binary/${binaryId}${q}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
    t.equal(r.status, 200);
    const body = (await r.json()) as { data?: string };
    t.ok((body.data?.length ?? 0) > 90_000, 'the content is in the answer');
    await settle();
    const rec = audits(s).find((a) => a.reqId === r.headers.get('x-request-id'));
    t.ok(rec, 'a record');
    t.match(rec?.what.blobs, [{ action: 'read', blob }], `${q || 'Accept: application/fhir+json'}: the blob served is named`);
  }
});

t.test('an inflated answer of a type that is not binary-bearing, cut short by the client, is still audited', async (t) => {
  const s = await stack(t);
  const pr = await fetch(`${s.gw.base}/Patient`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'A13' }] }),
  });
  const patientId = ((await pr.json()) as { id: string }).id;
  const doc = await postDocument(s, pdfDocument({ subject: { reference: `Patient/${patientId}` } }, 7_000_000));
  t.equal(doc.status, 201);
  await doc.arrayBuffer();

  // The whole answer: audited with the blob read.
  const path = `/Patient?_id=${patientId}&_revinclude=DocumentReference:subject`;
  const whole = await fetch(`${s.gw.base}${path}`, { headers: s.auth });
  t.equal(whole.status, 200);
  t.ok((await whole.text()).length > 9_000_000, 'the document inflated');
  await settle();
  t.ok(
    audits(s).some((a) => a.reqId === whole.headers.get('x-request-id')),
    'the complete answer is audited',
  );

  // Cut after the first bytes of the document's data.
  let timer: NodeJS.Timeout | undefined;
  const reqId = await new Promise<string>((resolve, reject) => {
    const u = new URL(`${s.gw.base}${path}`);
    const req = http.get(u, { headers: s.auth }, (res) => {
      let seen = 0;
      res.on('data', (c: Buffer) => {
        seen += c.length;
        if (seen > 200_000) {
          req.destroy();
          resolve(String(res.headers['x-request-id']));
        }
      });
      res.on('error', () => undefined);
    });
    req.on('error', () => undefined);
    timer = setTimeout(() => reject(new Error('no answer')), 20_000);
  });
  clearTimeout(timer);
  await settle();
  await settle();
  const rec = audits(s).find((a) => a.reqId === reqId);
  t.ok(rec, 'the cut-short answer (document bytes were sent) is an audit record');
  t.match(rec, { outcome: 'aborted' });
});

t.test('a Binary request refused while it is classified is audited', async (t) => {
  const s = await stack(t);
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const binaryId = createdId(created);
  const r = await fetch(`${s.gw.base}/Binary/${binaryId}?access_token=${'x'.repeat(20)}`, { headers: { accept: 'application/pdf' } });
  t.equal(r.status, 400);
  await r.arrayBuffer();
  await settle();
  const rec = audits(s).find((a) => a.reqId === r.headers.get('x-request-id'));
  t.ok(rec, 'a refused read of a Binary is an audit record');
  t.match(rec, { outcome: 'refused', code: 'BAD_REQUEST' });
  t.notOk(JSON.stringify(rec ?? {}).includes('xxxxxxxxxx'), 'without the query string');
});
