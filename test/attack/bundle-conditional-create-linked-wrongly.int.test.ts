// Attack 13b: the single-write fix (conditional-create-ownerless-blob) has a Bundle twin. A batch or
// transaction entry POST with `ifNoneExist` that matches an existing resource is answered with
// that resource's location: the blob stored for the discarded body is marked `linked` to a
// resource that never referred to it. The sweeper then unlinks it and gives it that resource's
// class (DocumentReference: clinical-documents, 7 years): an orphan kept for years, repeatable by
// any writer to fill the store.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

for (const type of ['batch', 'transaction'] as const) {
  t.test(`${type}: content of a conditional create that matched is not linked to the existing resource, and is swept`, async (t) => {
    const s = await stack(t);
    const doc = (n: number) => ({
      resourceType: 'DocumentReference',
      status: 'current',
      identifier: [{ system: 'urn:a13b', value: `dup-${type}` }],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(n).toString('base64') } }],
    });
    const first = await fetch(`${s.gw.base}/DocumentReference`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(doc(70_000)),
    });
    t.equal(first.status, 201);
    const existing = ((await first.json()) as { id: string }).id;
    const again = await fetch(`${s.gw.base}/`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Bundle',
        type,
        entry: [
          { resource: doc(80_000), request: { method: 'POST', url: 'DocumentReference', ifNoneExist: `identifier=urn:a13b|dup-${type}` } },
        ],
      }),
    });
    t.equal(again.status, 200);
    const answer = (await again.json()) as { entry?: { response?: { status?: string; location?: string } }[] };
    t.comment(JSON.stringify(answer.entry?.[0]?.response));
    const reqId = again.headers.get('x-request-id')!;
    const rec = await eventually(
      () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as AuditRecord | undefined,
      'the audit record',
    );
    const written = rec.what.blobs.find((b) => b.action === 'write')?.blob;
    t.ok(written, 'a blob was stored for the body');
    // Fixed: the entry's 200 says nothing was created, so the blob goes with the answer.
    t.ok(
      rec.what.blobs.some((b) => b.action === 'delete' && b.blob === written),
      'deleted in the same exchange',
    );
    t.notOk(
      rec.what.blobs.some((b) => b.action === 'link'),
      `never linked to DocumentReference/${existing}`,
    );
    t.equal(await new FilesystemBlobStore({ directory: s.gw.blobDir }).head(written!), undefined, 'gone from the store');
  });
}
