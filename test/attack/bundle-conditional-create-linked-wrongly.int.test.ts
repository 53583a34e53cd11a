// Attack 13b: the single-write fix (conditional-create-ownerless-blob) has a Bundle twin. A batch or
// transaction entry POST with `ifNoneExist` that matches an existing resource is answered with
// that resource's location: the blob stored for the discarded body is marked `linked` to a
// resource that never referred to it. The sweeper then unlinks it and gives it that resource's
// class (DocumentReference: clinical-documents, 7 years): an orphan kept for years, repeatable by
// any writer to fill the store.
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { stack } from '../helpers/binary-stack.js';
import { discardedBlob, pdfDocument, postDocument } from '../helpers/lifecycle.js';
import { bundle } from './helpers.js';

for (const type of ['batch', 'transaction'] as const) {
  t.test(`${type}: content of a conditional create that matched is not linked to the existing resource, and is swept`, async (t) => {
    const s = await stack(t);
    const doc = (n: number) => pdfDocument({ identifier: [{ system: 'urn:a13b', value: `dup-${type}` }] }, n);
    const first = await postDocument(s, doc(70_000));
    t.equal(first.status, 201);
    const existing = ((await first.json()) as { id: string }).id;
    const again = await bundle(
      s,
      s.auth,
      [{ resource: doc(80_000), request: { method: 'POST', url: 'DocumentReference', ifNoneExist: `identifier=urn:a13b|dup-${type}` } }],
      type,
    );
    t.equal(again.status, 200);
    const answer = (await again.json()) as { entry?: { response?: { status?: string; location?: string } }[] };
    t.comment(JSON.stringify(answer.entry?.[0]?.response));
    const reqId = again.headers.get('x-request-id')!;
    // Fixed: the entry's 200 says nothing was created, so the blob goes with the answer.
    const { rec, written } = await discardedBlob(t, s, reqId);
    t.notOk(
      rec.what.blobs.some((b) => b.action === 'link'),
      `never linked to DocumentReference/${existing}`,
    );
    t.equal(await new FilesystemBlobStore({ directory: s.gw.blobDir }).head(written!), undefined, 'gone from the store');
  });
}
