// Fixed: a blob gone with its record since the listing is counted as deleted, not as corrupt (storage/scrub.ts).
// Round 9: scrub lists a page of records, then reads each blob. A blob deleted in between — by
// the sweeper (expire, reconcile-delete), an admin DELETE, a refused write's discard, all of
// which run while a scrub does (docs/operations.md schedules both as cron jobs) — is reported as
// `kind: "content"` ("the stored content is missing"): storage/scrub.ts check() takes the
// BLOB_UNREADABLE of blobMissing() for wrong bytes, and the scrub exits 1 claiming corruption
// (a false alarm; an operator restoring "missing" content from a backup would bring back content
// that was deliberately deleted). A blob whose record is gone too was deleted, not corrupted.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { scrub } from '../../src/storage/scrub.js';

t.test('a blob deleted between the listing and its read is not reported as corrupt', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-scrub9-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: dir });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++)
    ids.push((await store.put(Readable.from([randomBytes(1000)]), { contentType: 'application/octet-stream' })).id);
  ids.sort();
  let deleted = false;
  const report = await scrub(store, {
    concurrency: 1,
    // The sweeper deletes the last blob while the scrub reads the first.
    onProgress: () => {
      if (deleted) return;
      deleted = true;
      void store.delete(ids[2]);
    },
  });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await store.head(ids[2]), undefined, 'deleted meanwhile');
  t.same(report.failures, [], `no corruption reported for a deleted blob (got ${JSON.stringify(report.failures)})`);
});
