// Attack 13: a conditional create that matches an existing resource is answered 200 with that
// resource and no Location. The content the gateway stored for the (discarded) body is then
// marked `linked` with no owner: no resource refers to it, it is served to nobody, and the sweeper
// never looks at it again (a linked blob is checked only through its owner) — it escapes
// retention for ever, and a client can repeat the request to fill the store.
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

t.test('content stored for a conditional create that created nothing does not stay in the store for ever', async (t) => {
  const s = await stack(t);
  const body = (n: number) =>
    JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      identifier: [{ system: 'urn:a13', value: 'dup' }],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(n).toString('base64') } }],
    });
  const first = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: body(70_000),
  });
  t.equal(first.status, 201);
  await first.arrayBuffer();
  const again = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json', 'if-none-exist': 'identifier=urn:a13|dup' },
    body: body(80_000),
  });
  t.equal(again.status, 200, 'the existing resource: nothing created');
  await again.arrayBuffer();
  const id = again.headers.get('x-request-id')!;
  const rec = await eventually(
    () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === id) as AuditRecord | undefined,
    'the audit record',
  );
  const written = rec.what.blobs.find((b) => b.action === 'write')?.blob;
  t.ok(written, 'a blob was stored for the body');
  // Fixed: the upstream said nothing was created (200 to a create), so the blob goes at once.
  t.ok(
    rec.what.blobs.some((b) => b.action === 'delete' && b.blob === written),
    'deleted in the same exchange',
  );
  t.equal(await new FilesystemBlobStore({ directory: s.gw.blobDir }).head(written!), undefined, 'gone from the store');
});
