// 413 on every Binary upload path (raw is in binary.int.test.ts): a FHIR JSON Binary body and
// $binary-access-write, declared or streamed, leave nothing stored and send nothing upstream.
import t from 'tap';
import { binaryPosts, code, PDF, stack, upload } from '../helpers/binary-stack.js';
import { settled } from '../helpers/poll.js';

const LIMIT = 200_000;
const RULE = { rules: [{ name: 'small', match: { resourceTypes: ['Binary', 'DocumentReference'] }, limits: { maxRequestBytes: LIMIT } }] };
const chunked = (body: Buffer) =>
  new ReadableStream({
    start(c) {
      for (let i = 0; i < body.length; i += 16_384) c.enqueue(body.subarray(i, i + 16_384));
      c.close();
    },
  });

t.test('FHIR JSON Binary body over the limit: 413, declared or streamed, nothing kept', async (t) => {
  const s = await stack(t, RULE);
  const body = Buffer.from(JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: PDF(LIMIT).toString('base64') }));
  const declared = await upload(s, body, 'application/fhir+json');
  t.equal(declared.status, 413, 'declared Content-Length');
  t.equal(await code(declared), 'PAYLOAD_TOO_LARGE');
  const streamed = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: chunked(body),
    duplex: 'half',
  });
  t.equal(streamed.status, 413, 'streamed (chunked) past the limit');
  t.equal(await code(streamed), 'PAYLOAD_TOO_LARGE');
  // The refusal may be answered while the store is still removing the part it wrote.
  t.same(await settled(() => s.gw.blobFiles(), []), [], 'nothing stored, no temp file');
  t.equal(binaryPosts(s), 0, 'nothing sent upstream');
});

t.test('$binary-access-write over the limit: 413, declared or streamed, nothing kept, resource unchanged', async (t) => {
  const s = await stack(t, RULE);
  const r = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf' } }],
    }),
  });
  const id = ((await r.json()) as { id: string }).id;
  const url = `${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content.attachment`;
  const big = PDF(LIMIT + 10);
  const declared = await fetch(url, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/pdf' }, body: big });
  t.equal(declared.status, 413);
  t.equal(await code(declared), 'PAYLOAD_TOO_LARGE');
  const streamed = await fetch(url, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: chunked(big),
    duplex: 'half',
  });
  t.equal(streamed.status, 413, 'streamed past the limit');
  await streamed.arrayBuffer();
  t.same(await settled(() => s.gw.blobFiles(), []), [], 'nothing stored');
  const doc = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as { meta: { versionId: string } };
  t.equal(doc.meta.versionId, '1', 'the DocumentReference was not updated');
});
