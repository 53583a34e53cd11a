// FINDING (signed URLs review round 3): a write URL's upload is held to the size limit of every rule
// for writing the content only when it declares a Content-Length. RequestFlow.signedFile
// (src/http/flow.ts) runs requireDeclaredSize for each of contentWriteRulesOf(…) —
// `$binary-access-write`'s, `$file-url`'s and the type's read rules — "the network conditions and
// size limits of every rule for writing the content hold for a URL as for a token"; but a chunked
// body has no declared size, and FileUrls.followWrite hands BinaryAccess.write an Exchange whose rule
// is `ruleFor($binary-access-write)` alone, so BlobLifecycle.upload counts the stream against that
// one rule's maxRequestBytes. A limit the operator put on `$file-url` (uploads by URL holders, who
// carry no token) or on the type's read rules is skipped by sending the same bytes with
// `Transfer-Encoding: chunked`: the holder stores content of any size up to the write rule's limit.
//
// Suggested fix: give the followed write the strictest of contentWriteRulesOf(…) (policy.strictest,
// as dispatch does for reached rules) so the streamed count uses the smallest maxRequestBytes.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { fileUrl, urlKeys, signedUrlsConfig } from '../helpers/signed-urls.js';
import { outcome } from './helpers.js';

t.test('a $file-url rule’s size limit holds for a write URL upload, declared or chunked', async (t) => {
  const s = await stack(t, {
    rules: [
      {
        name: 'url-holders',
        match: { interactions: ['operation'], operations: ['file-url'] },
        limits: { maxRequestBytes: 100_000 },
      },
    ],
    signedUrls: signedUrlsConfig(urlKeys(t), { policies: [{ id: 'uploads', permissions: 'rw', maxWindow: '30m' }] }),
  });
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', title: 'scan' } }],
    }),
  });
  t.equal(c.status, 201);
  const id = ((await c.json()) as { id: string }).id;
  const path = encodeURIComponent('DocumentReference.content[0].attachment');
  const url = await fileUrl(s, `DocumentReference/${id}/$file-url?permission=w&policy=uploads&path=${path}&window=5m`);
  const big = PDF(150_000);

  t.same(
    await outcome(fetch(url, { method: 'POST', headers: { 'content-type': 'application/pdf' }, body: big })),
    [413, 'PAYLOAD_TOO_LARGE'],
    'declared (Content-Length): refused by the $file-url rule’s limit (holds)',
  );

  const chunked = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < big.length; i += 16_384) controller.enqueue(big.subarray(i, i + 16_384));
      controller.close();
    },
  });
  t.same(
    await outcome(
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/pdf' },
        body: chunked,
        duplex: 'half',
      }),
    ),
    [413, 'PAYLOAD_TOO_LARGE'],
    'the same bytes chunked: refused by the same limit',
  );
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`, { headers: { accept: 'application/fhir+json' } })).json()) as {
    meta: { versionId: string };
  };
  t.equal(held.meta.versionId, '1', 'nothing was written: the resource keeps its first version');
});
