// FINDING (attack round 4 of issue 13, integrity/caching, class of raw-content-cache-control; fixed): the fix gave
// `Cache-Control: no-store` to content served as itself and to the Binary's FHIR JSON view, but a
// FHIR JSON answer the gateway inflates — a DocumentReference read whose attachment `data` the
// gateway streamed in from the store (the same PDF, base64), its vread, a search Bundle carrying
// it — goes out with no Cache-Control at all, while carrying
// `Last-Modified` and an ETag: a browser or shared proxy may keep (heuristically cache) the PHI
// and serve it later. Each answer below is checked to carry the document's content.
import t from 'tap';
import { PDF, stack, upload, createdId, type Stack } from '../helpers/binary-stack.js';

async function post(s: Stack, res: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${s.gw.base}/${res.resourceType as string}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(res),
  });
  if (r.status !== 201) throw new Error(`create ${res.resourceType as string}: ${r.status}`);
  return ((await r.json()) as { id: string }).id;
}

t.test('answers with inflated attachment content are no-store, like the raw content', async (t) => {
  const s = await stack(t);
  const pdf = PDF(200_000); // above externalize.minBytes: stored by the gateway, inflated on read
  const marker = pdf.toString('base64').slice(0, 4000);
  const doc = await post(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
  });
  const created = await upload(s, pdf, 'application/pdf');
  await created.arrayBuffer();
  const binary = createdId(created);

  const asks: [string, string, Record<string, string>][] = [
    ['control: the Binary as FHIR JSON (fixed before)', `Binary/${binary}`, { accept: 'application/fhir+json' }],
    ['DocumentReference read, content inflated', `DocumentReference/${doc}`, {}],
    ['DocumentReference vread, content inflated', `DocumentReference/${doc}/_history/1`, {}],
    ['DocumentReference search, content inflated', `DocumentReference?_id=${doc}`, {}],
  ];
  for (const [what, path, headers] of asks) {
    const r = await fetch(`${s.gw.base}/${path}`, { headers: { ...s.auth, ...headers } });
    const body = await r.text();
    t.equal(r.status, 200, `${what}: 200`);
    t.ok(body.includes(marker), `${what}: carries the stored content`);
    t.equal(
      r.headers.get('cache-control'),
      'no-store',
      `${what}: Cache-Control no-store (last-modified: ${r.headers.get('last-modified')})`,
    );
  }
});
