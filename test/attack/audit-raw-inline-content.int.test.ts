// FINDING (attack round 5, audit; a member of audit-reached-inline-content's class): content the
// FHIR server holds inline served RAW (Binary read, `$binary-access-read`, raw Media:
// RawResponder.serve with `inline` / `file` content) is never noted — no blob event (there is no
// blob) and no `what.inline` (only the response rewrite notes inline data). Whether a record is
// written then depends only on the request line naming a type listed in `content.allowedTypes`.
// A policy that lists only the types it accepts uploads for (here DocumentReference: no Binary
// uploads) leaves every raw read of an inline Binary — a document written before the gateway —
// without any audit record; with the default policy the record exists but does not say content
// went out (`what.inline` absent, `blobs: []`), unlike the same Binary read in a search Bundle.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { direct } from './helpers.js';

async function rawRead(
  s: Stack,
  id: string,
  pdf: Buffer,
  path = `Binary/${id}`,
  accept = 'application/pdf',
): Promise<AuditRecord | undefined> {
  const r = await fetch(`${s.gw.base}/${path}`, { headers: { ...s.auth, accept } });
  const body = Buffer.from(await r.arrayBuffer());
  if (r.status !== 200 || (accept === 'application/fhir+json' ? !body.includes(pdf.toString('base64')) : !body.equals(pdf)))
    throw new Error(`raw read: ${r.status}`);
  const reqId = r.headers.get('x-request-id');
  await s.gw.accessLine(reqId);
  await new Promise((res) => setTimeout(res, 200));
  return s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as AuditRecord | undefined;
}

t.test('inline content served raw is audited as content sent', async (t) => {
  const pdf = PDF(20_000);
  const binary = { resourceType: 'Binary', contentType: 'application/pdf', data: pdf.toString('base64') };

  const dflt = await stack(t);
  const a = await direct(dflt, binary);
  const rec = await rawRead(dflt, a, pdf);
  t.comment(`default policy: ${JSON.stringify(rec?.what)}`);
  t.ok(rec, 'default policy: a record');
  t.match(rec?.what.inline, { count: 1, bytes: pdf.length }, 'default policy: the record says inline content went out');

  const narrow = await stack(t, { content: { allowedTypes: { DocumentReference: ['application/pdf'] } } });
  const b = await direct(narrow, binary);
  const rec2 = await rawRead(narrow, b, pdf);
  t.comment(`policy without Binary uploads: ${JSON.stringify(rec2?.what)}`);
  t.ok(rec2, 'a policy accepting no Binary uploads: the raw read of an inline Binary still leaves a record');
});

// The rest of the class: every other way inline content goes out as itself, or in the FHIR JSON
// view of a Binary (which streams the content in, outside the response rewrite).
t.test('inline content served by $binary-access-read, raw Media and the FHIR view of a Binary is audited as content sent', async (t) => {
  const pdf = PDF(20_000);
  const data = pdf.toString('base64');
  const s = await stack(t, { content: { allowedTypes: { DocumentReference: ['application/pdf'] } } });

  const doc = await direct(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data } }],
  });
  const op = await rawRead(s, doc, pdf, `DocumentReference/${doc}/$binary-access-read?path=DocumentReference.content.attachment`);
  t.match(op?.what, { operation: 'binary-access-read', inline: { count: 1, bytes: pdf.length } }, '$binary-access-read');

  const media = await direct(s, { resourceType: 'Media', status: 'completed', content: { contentType: 'application/pdf', data } });
  const raw = await rawRead(s, media, pdf, `Media/${media}`);
  t.ok(raw, 'raw Media of a policy that lists no Media uploads: a record');
  t.match(raw?.what, { resourceType: 'Media', inline: { count: 1, bytes: pdf.length } }, 'raw Media');

  const bin = await direct(s, { resourceType: 'Binary', contentType: 'application/pdf', data });
  const view = await rawRead(s, bin, pdf, `Binary/${bin}`, 'application/fhir+json');
  t.ok(view, 'the FHIR JSON view of an inline Binary: a record');
  t.match(view?.what, { resourceType: 'Binary', inline: { count: 1, bytes: pdf.length } }, 'the FHIR JSON view of a Binary');

  const head = await fetch(`${s.gw.base}/Binary/${bin}`, { method: 'HEAD', headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(head.status, 200);
  await s.gw.accessLine(head.headers.get('x-request-id'));
  await new Promise((res) => setTimeout(res, 200));
  const headRec = s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === head.headers.get('x-request-id')) as
    AuditRecord | undefined;
  t.equal(headRec?.what.inline, undefined, 'a HEAD sends no content: none noted');
});
