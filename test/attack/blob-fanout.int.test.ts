// FINDING: one FHIR Binary body can make the gateway write an unbounded number of blobs.
// BinaryPlane.writeResource runs the Externalizer with minBytes 0 for *every* attachment, not only
// Binary.data, and nothing caps how many values one request externalizes. Attachments in
// extensions (`meta.extension[].valueAttachment`) are each stored as their own blob: ~75 bytes on
// the wire → one blob (content + metadata file, each fsynced, written one after the other).
// Measured here: 200 one-byte attachments in a 15 KB body → 201 blobs, ~10 ms each. Under the
// default 100 MiB limit that is over a million blobs (millions of files, hours of one request
// holding the store), all `linked` once the upstream accepts.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';

t.test('many tiny attachments in one Binary body become as many blobs', async (t) => {
  const s = await stack(t);
  const n = 200;
  const exts = Array.from({ length: n }, () => ({ url: 'urn:x', valueAttachment: { contentType: 'text/plain', data: 'YQ==' } }));
  const body = JSON.stringify({ resourceType: 'Binary', contentType: 'text/plain', data: 'aGk=', meta: { extension: exts } });
  const started = Date.now();
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/fhir+json' }, body });
  await r.arrayBuffer();
  const blobs = s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length;
  t.comment(`${body.length} bytes → status ${r.status}, ${blobs} blobs in ${Date.now() - started} ms`);
  // Since issue 13 round 7 (binary-nested-attachment-unreadable): a Binary carries content only in
  // Binary.data, so such a body is refused whole, and nothing it carried is left in the store.
  t.equal(r.status, 400, 'refused');
  t.equal(blobs, 0, `a ${body.length}-byte body leaves no blob, not ${n + 1}`);
});
