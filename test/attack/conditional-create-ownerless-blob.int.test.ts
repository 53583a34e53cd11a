// Attack 13: a conditional create that matches an existing resource is answered 200 with that
// resource and no Location. The content the gateway stored for the (discarded) body is then
// marked `linked` with no owner: no resource refers to it, it is served to nobody, and the sweeper
// never looks at it again (a linked blob is checked only through its owner) — it escapes
// retention for ever, and a client can repeat the request to fill the store.
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { stack } from '../helpers/binary-stack.js';
import { discardedBlob, pdfDocument, postDocument } from '../helpers/lifecycle.js';

t.test('content stored for a conditional create that created nothing does not stay in the store for ever', async (t) => {
  const s = await stack(t);
  const doc = (n: number) => pdfDocument({ identifier: [{ system: 'urn:a13', value: 'dup' }] }, n);
  const first = await postDocument(s, doc(70_000));
  t.equal(first.status, 201);
  await first.arrayBuffer();
  const again = await postDocument(s, doc(80_000), { 'if-none-exist': 'identifier=urn:a13|dup' });
  t.equal(again.status, 200, 'the existing resource: nothing created');
  await again.arrayBuffer();
  const id = again.headers.get('x-request-id')!;
  // Fixed: the upstream said nothing was created (200 to a create), so the blob goes at once.
  const { written } = await discardedBlob(t, s, id);
  t.equal(await new FilesystemBlobStore({ directory: s.gw.blobDir }).head(written!), undefined, 'gone from the store');
});
