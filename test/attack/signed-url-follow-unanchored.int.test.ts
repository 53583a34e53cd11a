// FINDING (signed URLs review round 3): a followed signed URL serves whatever the store's own record
// says the blob is, without the anchor every token read has. `$binary-access-read` (and a Binary
// read) hands BlobLifecycle.blobFor the reference the FHIR server holds, with its SHA-256, and
// refuses content whose record does not carry that hash (BLOB_UNREADABLE: "its hash differs from
// the reference the FHIR server holds", docs/errors.md). FileUrls.follow (src/binary/file-urls.ts)
// calls `blobFor({ id: v.blobId }, owner)`: no sha256, so that comparison is skipped, and the
// per-chunk check only compares the bytes with digests from the same (replaceable) record. Someone
// who can write the object store — the threat attacks sealed-blob-swap and legacy-range-swap guard
// against — puts other content under a blob id (its bytes and a record naming the same id and
// owner): every token read of that resource refuses it, and so does `$file-url` (its blobFor has
// the reference), yet every signed URL already handed out (by `$file-url` or as a link) serves the
// substituted content in a clean 200, with a strong ETag of the substitute's hash. The URL's
// guarantee ("the answer is the content as $binary-access-read serves it") does not hold.
//
// Suggested fix: sign the content's SHA-256 into the URL (a canonical field such as `ssh`, the
// value the issuer already has from the `_data` reference) and pass `{ id, sha256 }` to blobFor at
// follow, so a URL names one content, not one slot in the store.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { PDF, sha256, stack, upload, createdId, blobRefOf } from '../helpers/binary-stack.js';
import { fileUrl, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome } from './helpers.js';

t.test('content substituted in the store: token reads refuse it, a signed URL must too', async (t) => {
  const s = await stack(t, { signedUrls: signedUrlsConfig(urlKeys(t)) });
  const a = PDF(120_000);
  const b = PDF(120_000);
  const ids: string[] = [];
  const blobs: string[] = [];
  for (const body of [a, b]) {
    const r = await upload(s, body, 'application/pdf');
    await r.arrayBuffer();
    t.equal(r.status, 201);
    ids.push(createdId(r));
    blobs.push((await blobRefOf(s, ids.at(-1)!))!.id);
  }
  const url = await fileUrl(s, `Binary/${ids[0]}/$file-url?window=10m`);
  const first = await fetch(url);
  t.equal(sha256(Buffer.from(await first.arrayBuffer())), sha256(a), 'before: the URL serves A');

  // Behind the gateway's back: B's bytes and B's record (renamed to A's id and owner) put in A's place.
  const file = (id: string, ext: string) => join(s.gw.blobDir, id.slice(0, 2), id.slice(2, 4), `${id}.${ext}`);
  writeFileSync(file(blobs[0], 'blob'), readFileSync(file(blobs[1], 'blob')));
  const record = JSON.parse(readFileSync(file(blobs[1], 'json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(file(blobs[0], 'json'), JSON.stringify({ ...record, id: blobs[0], owner: `Binary/${ids[0]}` }));

  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${ids[0]}`, { headers: s.auth })),
    [500, 'BLOB_UNREADABLE'],
    'a token read of A refuses it: the hash the FHIR server holds is not the content’s',
  );

  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${ids[0]}/$file-url?window=15m`, { headers: s.auth })),
    [500, 'BLOB_UNREADABLE'],
    'issuing a new URL checks the FHIR server’s hash too (blobFor with the reference): refused',
  );

  const followed = await fetch(url);
  const body = Buffer.from(await followed.arrayBuffer());
  t.notOk(body.equals(b), 'the URL issued for A does not serve B’s content');
  t.not(followed.headers.get('etag'), `"${sha256(b)}"`, 'nor vouch for it with B’s hash as a strong ETag');
  t.same(await outcome(fetch(url)), [404, 'NOT_FOUND'], 'refused as content no longer available, as a quarantined or missing blob is');
});
