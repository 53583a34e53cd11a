// Attack 13b: the single-write fix (conditional-create-ownerless-blob) has a Bundle twin. A batch or
// transaction entry POST with `ifNoneExist` that matches an existing resource is answered with
// that resource's location: the blob stored for the discarded body is marked `linked` to a
// resource that never referred to it. The sweeper then unlinks it and gives it that resource's
// class (DocumentReference: clinical-documents, 7 years): an orphan kept for years, repeatable by
// any writer to fill the store.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';
import { defaultRetention } from '../helpers/retention.js';

const DAY = 24 * 3_600_000;

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
    const path = join(s.gw.blobDir, written!.slice(0, 2), written!.slice(2, 4), `${written}.json`);
    const meta = JSON.parse(readFileSync(path, 'utf8')) as { state: string; owner?: string | null };
    t.not(
      meta.state === 'linked' && meta.owner === `DocumentReference/${existing}`,
      true,
      `not linked to DocumentReference/${existing}, which never referred to it (state ${meta.state}, owner ${String(meta.owner)})`,
    );

    const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
    const spool = mkdtempSync(join(tmpdir(), 'fbg-a13b-spool-'));
    t.teardown(() => rmSync(spool, { recursive: true, force: true }));
    const run = (at: Date) =>
      sweep({
        store,
        upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
        spoolDir: spool,
        retention: defaultRetention(),
        dryRun: false,
        holder: 'attack-13b',
        now: () => at,
      });
    await run(new Date(Date.now() + 2 * DAY));
    await run(new Date(Date.now() + 30 * DAY));
    t.equal(await store.head(written!), undefined, 'a month of sweeps later it is gone: no version of anything ever referred to it');
  });
}
