// Attack 14 (sweeper surface): HAPI FHIR — the upstream docs/configuration.md names first — pages
// every search and history with links on its base itself: `[base]?_getpages=…&_getpagesoffset=50`.
// The sweeper follows `next` links only under `${base}/`, so it never reads page 2 of anything on
// HAPI. Two consequences:
//  1. the retention class: the history of a document is read for the versions that referred to
//     the blob; when page 2 is not followed the history counts as read WHOLE (url undefined), and
//     with no referring version on page 1 (more than 50 versions since) the class falls back to the
//     last version's categories — a discharge summary's PDF kept 7 days, not 7 years;
//  2. a create's pending blob on a type with more than 50 resources is never decided: an orphan
//     the upstream provably does not hold is kept forever (and asked about again every sweep).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { blobExtension } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const DISCHARGE = { coding: [{ system: 'http://loinc.org', code: '34133-9' }] };
const PROGRESS = { coding: [{ system: 'http://loinc.org', code: '11506-3' }] };
const classes = [
  { name: 'discharge-summaries', keepDays: 2557, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9'] },
];

/** A HAPI-like server: `pages(path)` gives the entries of a search or history; pages of 50 behind `?_getpages` links. */
async function hapi(t: Test, routes: (path: string) => { resource?: unknown; entries?: unknown[]; status?: number }): Promise<string> {
  let base = '';
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/fhir+json');
    const paged = (path: string, offset: number) => {
      const all = routes(path).entries ?? [];
      const page = all.slice(offset, offset + 50);
      const next =
        offset + 50 < all.length
          ? [{ relation: 'next', url: `${base}?_getpages=${encodeURIComponent(path)}&_getpagesoffset=${offset + 50}&_count=50` }]
          : [];
      res.end(
        JSON.stringify({
          resourceType: 'Bundle',
          type: path.includes('_history') ? 'history' : 'searchset',
          total: all.length,
          link: next,
          entry: page,
        }),
      );
    };
    if (url.pathname === '/fhir' && url.searchParams.has('_getpages'))
      return paged(url.searchParams.get('_getpages')!, Number(url.searchParams.get('_getpagesoffset')));
    const r = routes(url.pathname.slice('/fhir/'.length));
    if (r.entries) return paged(url.pathname.slice('/fhir/'.length), 0);
    res.statusCode = r.status ?? (r.resource ? 200 : 404);
    res.end(JSON.stringify(r.resource ?? { resourceType: 'OperationOutcome', issue: [] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  return base;
}

function temp(t: Test): { dir: string; spool: string; store: FilesystemBlobStore } {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-a14-hapi-'));
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a14-hapi-spool-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(spool, { recursive: true, force: true });
  });
  return { dir, spool, store: new FilesystemBlobStore({ directory: dir }) };
}

function patch(dir: string, id: string, p: Record<string, unknown>): void {
  const rec = join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.json`);
  writeFileSync(rec, JSON.stringify({ ...JSON.parse(readFileSync(rec, 'utf8')), ...p }));
}

t.test('HAPI paging: a discharge summary re-filed, then edited 60 times, keeps its class', async (t) => {
  const { dir, spool, store } = temp(t);
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  const written = new Date(Date.now() - 3 * DAY).toISOString();
  patch(dir, info.id, { state: 'linked', owner: 'DocumentReference/doc', createdAt: written, updatedAt: written });
  const version = (v: number) => ({
    resourceType: 'DocumentReference',
    id: 'doc',
    meta: { versionId: String(v) },
    status: 'current',
    category: [v === 1 ? DISCHARGE : PROGRESS],
    content: [
      {
        attachment:
          v === 1
            ? { contentType: 'application/pdf', _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] } }
            : { contentType: 'application/pdf', url: `http://example.org/v${v}.pdf` },
      },
    ],
  });
  const history = Array.from({ length: 61 }, (_, i) => ({ resource: version(61 - i) }));
  const base = await hapi(t, (path) =>
    path === 'DocumentReference/doc' ? { resource: version(61) } : path === 'DocumentReference/doc/_history' ? { entries: history } : {},
  );
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention({ classes }),
    dryRun: false,
    holder: 'attack-14',
    now: () => midHour(),
  });
  t.notMatch(
    report.unlinked,
    [{ id: info.id, retention: 'unlinked' }],
    `not the 7 days of "unlinked" (${JSON.stringify(report.unlinked)}, kept ${JSON.stringify(report.kept)})`,
  );
  const rec = await store.head(info.id);
  t.ok(!rec?.retainUntil || Date.parse(rec.retainUntil) > Date.now() + 365 * DAY, `kept for its class (retainUntil ${rec?.retainUntil})`);
});

t.test('HAPI paging: a create’s pending blob the upstream does not hold is decided on a type of 60 resources', async (t) => {
  const { dir, spool, store } = temp(t);
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  patch(dir, info.id, { createdAt: new Date(Date.now() - 2 * HOUR).toISOString() });
  const docs = Array.from({ length: 60 }, (_, i) => ({
    resource: { resourceType: 'DocumentReference', id: `d${i}`, meta: { versionId: '1' }, status: 'current', content: [] },
  }));
  const base = await hapi(t, (path) =>
    path === 'DocumentReference' ? { entries: docs } : path === 'DocumentReference/_history' ? { entries: [] } : {},
  );
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-14',
    now: () => midHour(),
  });
  t.same(report.deleted, [info.id], `deleted: no DocumentReference refers to it (kept: ${JSON.stringify(report.kept)})`);
});
