// Attack round 5 of issue 13 (sweeper surface), a new member of sweep-starved-by-kept. A sweep
// that stops records where (`sweep-resume-{period}`), but the next one "resumes" by listing the
// store from its FIRST blob and skipping every record whose id sorts before the resume point
// (sweeper.ts walk: `store.list()` without a cursor, `if (info.id < from) continue`). Every
// record before it is read again (the filesystem store reads each record file, S3 and Azure GET
// each record object), and while skipping the sweep never looks at its deadline. The bulk of a
// real store is linked blobs checked recently (not due): they cost listing and nothing else. So
// the cost of reaching the resume point grows with it; once it is close to a period, each sweep
// spends its period re-listing and gets a few blobs further, then none: the resume point freezes
// and no blob after it is ever reconciled, unlinked or deleted again — for everyone. The stores
// take a cursor (`list({ cursor })` starts after an id); the sweep does not pass one.
//
// The sweep's clock is the store's work: each record listed costs RECORD_MS (listing pages of
// 10 here stand for the 1000-record pages of a store with millions of blobs, where reading the
// records before the resume point takes tens of minutes), and each sweep gets BUDGET_MS of its
// period, so the outcome does not depend on how busy the machine is.
import { Readable } from 'node:stream';
import t from 'tap';
import { sweep, type SweepReport } from '../../src/binary/sweeper.js';
import type { BlobStore, ListOptions } from '../../src/storage/blob-store.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF } from '../helpers/binary-stack.js';
import { editRecord, hoursAgo, knowsNothing, sweepOptions, tempDir } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;
/** What reading one record while listing costs on the sweep's clock. */
const RECORD_MS = 1000;
/** What each sweep gets of its period. */
const BUDGET_MS = 60_000;

t.test('a resumed sweep does not pay again for every record before where it resumes', async (t) => {
  const dir = tempDir(t, 'fbg-a15-resume-');
  const inner = new FilesystemBlobStore({ directory: dir });
  let spent = 0;
  let listed = 0;
  // The real store, its listing charged to the sweep's clock record by record, in pages of 10.
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'list')
        return async (o: ListOptions = {}) => {
          const page = await target.list({ ...o, limit: 10 });
          spent += page.items.length * RECORD_MS;
          listed += page.items.length;
          return page;
        };
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as BlobStore;

  // 200 linked blobs checked just now (not due: the bulk of any store) and 100 orphans: pending
  // creates two days old that no resource refers to (the upstream knows nothing of them).
  const orphans = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const linked = i % 3 !== 0;
    const info = await inner.put(
      Readable.from([PDF(50)]),
      linked
        ? { contentType: 'application/pdf', state: 'linked', owner: `DocumentReference/d${i}` }
        : { contentType: 'application/pdf', intent: 'DocumentReference' },
    );
    if (!linked) {
      editRecord(dir, info.id, { createdAt: hoursAgo(48) });
      orphans.add(info.id);
    }
  }

  const upstream = knowsNothing();
  const base = sweepOptions(t, store, 'http://127.0.0.1:1/fhir', { upstream });
  const reports: (Pick<SweepReport, 'deleted' | 'stoppedEarly' | 'resumedAt'> & { listed: number })[] = [];
  for (let k = 1; k <= 10; k++) {
    // Period k: the sweep starts BUDGET_MS before its deadline (30 s before the period's end).
    const startAt = midHour(k).getTime() + HOUR / 2 - 30_000 - BUDGET_MS;
    spent = 0;
    listed = 0;
    const r = await sweep({ ...base, holder: `attack-15-${k}`, now: () => new Date(startAt + spent) });
    reports.push({ deleted: r.deleted, stoppedEarly: r.stoppedEarly, resumedAt: r.resumedAt, listed });
  }
  t.comment(
    reports
      .map((r, k) => `sweep ${k + 1}: listed ${r.listed}, deleted ${r.deleted.length}, resumed at ${r.resumedAt?.slice(0, 8) ?? '-'}`)
      .join('\n'),
  );
  const left = [...orphans].filter((id) => !reports.some((r) => r.deleted.includes(id)));
  // Where each sweep stopped: where the next one resumed (the last one's, its record). A sweep
  // looks at its deadline on every page, so one that spent its period listing blobs not due (the
  // 200 linked ones, once the orphans are gone) stops where it got to: it made progress if it
  // deleted, went round, or stopped past where it resumed (the resume point did not freeze).
  const last = (await inner.claims()).find((c) => c.name.startsWith('sweep-resume-'))?.note ?? null;
  const stoppedAt = [...reports.slice(1).map((r) => r.resumedAt), last];
  t.ok(
    reports.slice(-3).every((r, i) => r.deleted.length > 0 || !r.stoppedEarly || stoppedAt[reports.length - 3 + i] !== r.resumedAt),
    'the last sweeps still make progress (or are done)',
  );
  t.ok(
    reports.every((r) => r.listed <= BUDGET_MS / RECORD_MS + 10),
    'no sweep lists more than its budget and one page',
  );
  t.equal(left.length, 0, `within ten periods every orphan is deleted (${left.length} of ${orphans.size} left)`);
});
