// FINDING (attack round 4 of issue 13, audit; fixed: the response rewrite notes inline attachment data it sends): a document's content read through a request whose line names another
// type — a batch GET entry, `_revinclude` (likewise `_include`, system search/history) — leaves NO
// audit record when the content is inline in the FHIR server (attachment data below
// `externalize.minBytes`, 64 KiB by default, stays inline even when written through the gateway).
// The same document read directly (`GET DocumentReference/{id}`) is recorded. The trail decides
// "binary-bearing" by the request line's type (exchange-audit.ts binaryBearing), not by what the
// request reached or what the answer carried; only stored blobs leave an event behind.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE } from './helpers.js';

const audits = (s: Stack) => s.gw.logs.lines.filter((l) => l['audit'] === 1) as unknown as AuditRecord[];

async function post(s: Stack, res: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${s.gw.base}/${res.resourceType as string}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(res),
  });
  if (r.status !== 201) throw new Error(`create ${res.resourceType as string}: ${r.status}`);
  return ((await r.json()) as { id: string }).id;
}

t.test('inline document content reached through another request line is audited like a direct read', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const patient = await post(s, { resourceType: 'Patient', name: [{ family: 'AuditReach' }] });
  // A 20 kB PDF: below externalize.minBytes, so the FHIR server holds it inline (written through the gateway).
  const pdf = PDF(20_000);
  const marker = pdf.toString('base64').slice(0, 2000);
  const doc = await post(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    subject: { reference: `Patient/${patient}` },
    content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
  });

  const asks: [string, () => Promise<Response>][] = [
    ['control: GET DocumentReference/{id}', () => fetch(`${s.gw.base}/DocumentReference/${doc}`, { headers: s.auth })],
    [
      'a batch GET entry',
      () =>
        fetch(s.gw.base, {
          method: 'POST',
          headers: { ...s.auth, 'content-type': 'application/fhir+json' },
          body: JSON.stringify({
            resourceType: 'Bundle',
            type: 'batch',
            entry: [{ request: { method: 'GET', url: `DocumentReference/${doc}` } }],
          }),
        }),
    ],
    [
      'Patient?_revinclude=DocumentReference:subject',
      () => fetch(`${s.gw.base}/Patient?_id=${patient}&_revinclude=DocumentReference:subject`, { headers: s.auth }),
    ],
  ];
  for (const [what, ask] of asks) {
    const r = await ask();
    const body = await r.text();
    t.equal(r.status, 200, `${what}: answered`);
    t.ok(body.includes(marker), `${what}: the document's content is in the answer`);
    // The access line marks the end of the exchange; the audit record is written at the same moment.
    await s.gw.accessLine(r.headers.get('x-request-id'));
    await new Promise((res) => setTimeout(res, 200));
    const rec = audits(s).find((a) => a.reqId === r.headers.get('x-request-id'));
    t.ok(rec, `${what}: an audit record (PHI content was served)`);
    t.match(rec?.what.inline, { count: 1, bytes: pdf.length }, `${what}: the record says inline content went out, and how much`);
  }
});
