// Attack round 4 of issue 13 (sweeper surface), Medium; fixed: a sweep resumes where the last one stopped: a sweep walks the store from its first id every period and stops
// at the period's end; blobs it keeps for "no verdict" are not marked in any way, so every sweep
// asks the upstream about them again, at full cost (a pending create on a type too large to scan
// whole costs 100 upstream requests: 50 pages windowed, 50 pages of the full scan). Such blobs
// only accumulate (a type never becomes smaller), so once asking about them takes longer than a
// period, every sweep spends its whole period on them and stops at the same place: no blob whose
// id sorts after that point is ever reconciled, unlinked or deleted again — for everyone.
// Here 20 such blobs stand for the ~1000 that fill an hour against a remote upstream at ~36 ms a
// request. The sweep's clock is the upstream's work, not the wall: each request costs 4 ms, and
// each sweep is given the last 2 s of its period (500 requests, about ten undecided blobs), so
// the outcome does not depend on how busy the machine is.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep, type SweepReport } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;
/** What one upstream request costs on the sweep's clock. */
const REQUEST_MS = 4;

t.test('blobs kept for "no verdict" do not starve every blob after them, sweep after sweep', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-a14-starve-'));
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a14-starve-spool-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(spool, { recursive: true, force: true });
  });
  const store = new FilesystemBlobStore({ directory: dir });
  const age = (id: string, patch: Record<string, unknown>) => {
    const rec = join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.json`);
    writeFileSync(
      rec,
      JSON.stringify({ ...JSON.parse(readFileSync(rec, 'utf8')), createdAt: new Date(Date.now() - 2 * HOUR).toISOString(), ...patch }),
    );
  };
  // 21 pending blobs, two hours old. The 20 first in id order: creates on DocumentReference whose
  // answer was lost and that the upstream never stored (no verdict: the type is too large to scan).
  // The last: an update of Binary/gone, which does not exist — provably referred to by nothing.
  const ids: string[] = [];
  for (let i = 0; i < 21; i++)
    ids.push((await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf', intent: 'DocumentReference' })).id);
  ids.sort();
  const orphan = ids[20];
  for (const id of ids.slice(0, 20)) age(id, {});
  age(orphan, { intent: 'Binary/gone' });

  // The upstream: DocumentReference has more resources than a scan reads (every page full, with a next link).
  let base = '';
  let asked = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/fhir+json');
    asked++;
    const json = (status: number, body: unknown): void => {
      res.statusCode = status;
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/fhir/DocumentReference') {
      const page = Number(url.searchParams.get('page') ?? '0');
      return json(200, {
        resourceType: 'Bundle',
        type: 'searchset',
        link: [{ relation: 'next', url: `${base}/DocumentReference?page=${page + 1}&_count=50` }],
        entry: Array.from({ length: 50 }, (_, i) => ({
          resource: { resourceType: 'DocumentReference', id: `d${page}-${i}`, meta: { versionId: '1' }, status: 'current', content: [] },
        })),
      });
    }
    if (url.pathname === '/fhir/Binary') return json(200, { resourceType: 'Bundle', type: 'searchset', entry: [] });
    json(404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found' }] });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;

  const retention = defaultRetention();
  const reports: SweepReport[] = [];
  for (let k = 1; k <= 3; k++) {
    // Period k: the sweep starts 2 s before the end of its period (30 s before its boundary).
    const periodEnd = midHour(k).getTime() + HOUR / 2;
    const before = asked;
    const startAt = periodEnd - 30_000 - 2_000;
    reports.push(
      await sweep({
        store,
        upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
        spoolDir: spool,
        retention,
        dryRun: false,
        holder: `attack-14-${k}`,
        now: () => new Date(startAt + (asked - before) * REQUEST_MS),
      }),
    );
  }
  t.comment(
    JSON.stringify(reports.map((r) => ({ claimed: r.claimed, kept: r.kept.length, deleted: r.deleted, stoppedEarly: r.stoppedEarly }))),
  );
  t.ok(
    reports.every((r) => r.claimed),
    'each period swept',
  );
  t.ok(
    reports.some((r) => r.deleted.includes(orphan)),
    'within three periods the sweep reaches the orphan (it goes on where the last one stopped, or stops re-asking what it could not decide)',
  );
  t.equal(await store.head(orphan), undefined, 'the orphan is gone');
});
