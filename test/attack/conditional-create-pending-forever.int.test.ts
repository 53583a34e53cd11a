// Attack 13c (class: conditional-create-ownerless-blob). The fix for a matched conditional create
// leaves its blob `pending` "for the sweeper to reconcile". But the sweeper deletes a pending
// create's blob only after a complete scan of the type (at most 50 pages of 50): on any server
// holding more than 2 500 resources of the type — every production DocumentReference table — the
// scan is "no verdict" and the blob is kept, every sweep, forever. Any writer repeats the matched
// create to fill the store with content no resource will ever refer to.
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';

const EXISTING = 2_600;

t.test('the blob of a matched conditional create is deleted by the sweeper on a server with many resources of its type', async (t) => {
  const s = await stack(t);
  // The upstream's existing documents, written around the gateway.
  for (let i = 0; i < EXISTING; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, EXISTING - i) }, (_, k) =>
        fetch(`${s.up.url}/DocumentReference`, {
          method: 'POST',
          headers: { 'content-type': 'application/fhir+json' },
          body: JSON.stringify({
            resourceType: 'DocumentReference',
            status: 'current',
            identifier: [{ system: 'urn:a13c', value: `doc-${i + k}` }],
            content: [{ attachment: { contentType: 'text/plain', url: 'urn:none' } }],
          }),
        }).then((r) => r.arrayBuffer()),
      ),
    );
  }
  // A writer repeats a conditional create that matches doc-0: 200, nothing created.
  const r = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:a13c|doc-0' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      identifier: [{ system: 'urn:a13c', value: 'doc-0' }],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  t.equal(r.status, 200, 'matched: nothing created');
  await r.arrayBuffer();
  // The upstream itself says nothing was created: the blob goes at once (fixed), no sweep has to
  // prove it by scanning a type too large to scan.
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  t.same((await store.list()).items, [], 'nothing left in the store');
});
