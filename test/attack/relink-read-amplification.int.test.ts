// Attack round 6 of issue 13 (relink surface). Each own content link in an update is resolved by
// reading the resource's current version from the upstream whole (own-content.ts → attachment():
// a GET, parsed up to MAX_RESOURCE_BYTES, inline data decoded) — once per attachment, with no cap
// and no reuse: a PUT of one small body with N copies of a valid own link (same path, same hash: a
// reader knows both) makes N sequential full reads of the resource. With a resource made large
// first (inline data under externalize.minBytes, long text), one request is an unbounded multiple
// of upstream traffic, parsing and memory; a few in parallel hold the upstream and the gateway.
// Fixed: one streamed read per request gives every stored reference by path (stored-refs.ts).
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, readLinked } from '../helpers/lifecycle.js';

t.test('an update with many copies of one own link reads the resource a bounded number of times', async (t) => {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  const body = await readLinked(s, `/DocumentReference/${doc.id}`);
  const att = body.content[0].attachment as Record<string, unknown>;
  t.type(att.url, 'string', 'the read answered a link');

  const N = 400;
  body.content = Array.from({ length: N }, () => ({ attachment: { ...att } }));
  const wire = JSON.stringify(body);
  t.comment(`update body: ${wire.length} bytes, ${N} copies of the link`);
  const before = s.up.requests.length;
  const started = Date.now();
  const put = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: wire,
  });
  await put.arrayBuffer();
  const reads = s.up.requests
    .slice(before)
    .filter((r) => r.method === 'GET' && r.url.startsWith(`/fhir/DocumentReference/${doc.id}`)).length;
  t.comment(`update: ${put.status} in ${Date.now() - started} ms; full reads of the resource from the upstream: ${reads}`);
  t.ok(reads <= 2, `one request reads the resource a bounded number of times (got ${reads} for ${N} links)`);
});
