// Attack 13: a conditional create that matches an existing resource is answered 200 with that
// resource and no Location. The content the gateway stored for the (discarded) body is then
// marked `linked` with no owner: no resource refers to it, it is served to nobody, and the sweeper
// never looks at it again (a linked blob is checked only through its owner) — it escapes
// retention for ever, and a client can repeat the request to fill the store.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { defaultRetention } from '../helpers/retention.js';
import { eventually } from '../helpers/poll.js';

const DAY = 24 * 3_600_000;

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
  const path = join(s.gw.blobDir, written!.slice(0, 2), written!.slice(2, 4), `${written}.json`);
  const meta = JSON.parse(readFileSync(path, 'utf8')) as { state: string; owner?: string | null };
  t.not(meta.state === 'linked' && !meta.owner, true, `not "linked" to no one (state ${meta.state}, owner ${String(meta.owner)})`);

  // A month of sweeps later, it is gone (no resource refers to it).
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const later = new Date(Date.now() + 30 * DAY);
  await sweep({
    store,
    upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-13',
    now: () => later,
  });
  t.equal(await store.head(written!), undefined, 'swept: nothing refers to it');
});
