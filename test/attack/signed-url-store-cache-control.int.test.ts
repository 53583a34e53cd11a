// FINDING (signed URLs review): content served through a store URL (`$file-url?via=store`) carries
// no Cache-Control at all. Every other way content leaves the gateway carries `no-store` (or the
// operator's `private, max-age=N`; the gateway's own signed URL `private, max-age=<seconds left>`)
// because "without it a browser or a shared proxy could keep PHI and serve it later to someone
// else" (docs/security.md, "Caching of content"; attack raw-content-cache-control). The presigned
// GET pins Content-Type and Content-Disposition (`response-content-*`) but not
// `response-cache-control` (Azure: `rscc`), so the store answers with none and caches apply their
// heuristics (S3 sends Last-Modified) — for as long as they like, past the URL's expiry.
// Cause: src/storage/s3.ts `readUrl` (no ResponseCacheControl), src/storage/azure.ts `readUrl`
// (no cacheControl); src/binary/file-urls.ts `storeUrl` passes none.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { s3Storage, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

t.test('S3: a store URL answer keeps PHI out of caches', async (t) => {
  const { storage } = await s3Storage(t);
  const s = await stack(t, { storage, signedUrls: signedUrlsConfig(urlKeys(t), { store: { enabled: true, acceptGaps: ['withdraw'] } }) });
  const c = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: PDF(90_000),
  });
  await c.arrayBuffer();
  const id = (c.headers.get('location') ?? '').split('/')[5];
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store`, { headers: s.auth });
  const url = ((await r.json()) as { parameter: { name: string; valueUrl?: string }[] }).parameter.find((p) => p.name === 'url')!.valueUrl!;

  const d = await fetch(url);
  await d.arrayBuffer();
  t.equal(d.status, 200);
  t.comment(`store answer: cache-control=${d.headers.get('cache-control')} last-modified=${d.headers.get('last-modified')}`);
  t.match(url, /response-cache-control=/, 'the presigned GET pins a Cache-Control, as it pins type and disposition');
  t.match(
    d.headers.get('cache-control') ?? '',
    /^(no-store|private, max-age=\d+)$/,
    'the answer is kept by no shared cache, nor past the window',
  );
});
