// Attack 14 (sweeper surface): the fix of retention-class-escape asks a HAPI-like upstream for the
// type's history since a create's write, so that a document created with the blob and deleted
// since (its version 1 still read by vread) counts. But that last scan's answer is believed
// whatever it was: an error (500, a timeout: type-level history is the most expensive query a
// busy server has) is `.catch(() => undefined)`, and a scan that did not see every page (a `next`
// link on an alias base, more than 50 pages of other documents' updates) is read as "none". The
// blob a still-readable version refers to is then deleted at once, with no retention class.
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

type TypeHistory = (url: URL, base: string, v1: unknown) => { status: number; body: unknown };

async function scenario(t: Test, typeHistory: TypeHistory): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-a14-th-'));
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a14-th-spool-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(spool, { recursive: true, force: true });
  });
  const store = new FilesystemBlobStore({ directory: dir });
  // A create whose answer was lost: pending, written for `DocumentReference`, two hours ago.
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  const rec = join(dir, info.id.slice(0, 2), info.id.slice(2, 4), `${info.id}.json`);
  writeFileSync(
    rec,
    JSON.stringify({ ...JSON.parse(readFileSync(rec, 'utf8')), createdAt: new Date(Date.now() - 2 * HOUR).toISOString() }),
  );
  // The upstream did store it (DocumentReference/gone, version 1), and it was deleted since:
  // gone from searches, 410 on read, its version 1 still served by vread (HAPI).
  const v1 = {
    resourceType: 'DocumentReference',
    id: 'gone',
    meta: { versionId: '1' },
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] } } },
    ],
  };
  let base = '';
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/fhir+json');
    const json = (status: number, body: unknown) => {
      res.statusCode = status;
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/fhir/DocumentReference')
      return json(200, { resourceType: 'Bundle', type: 'searchset', total: 0, link: [], entry: [] });
    if (url.pathname === '/fhir/DocumentReference/_history') {
      const r = typeHistory(url, base, v1);
      return json(r.status, r.body);
    }
    if (url.pathname === '/fhir/DocumentReference/gone/_history')
      return json(200, {
        resourceType: 'Bundle',
        type: 'history',
        entry: [{ request: { method: 'DELETE', url: 'DocumentReference/gone' } }, { resource: v1 }],
      });
    if (url.pathname === '/fhir/DocumentReference/gone/_history/1') return json(200, v1);
    if (url.pathname === '/fhir/DocumentReference/gone') return json(410, { resourceType: 'OperationOutcome', issue: [] });
    json(404, { resourceType: 'OperationOutcome', issue: [] });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-14',
    now: () => midHour(),
  });
  t.same(
    report.deleted,
    [],
    `DocumentReference/gone version 1 refers to it: not deleted (${JSON.stringify({ kept: report.kept, linked: report.linked })})`,
  );
  t.ok(await store.head(info.id), 'still in the store: vread of version 1 reads it');
}

t.test('the type history answers 500 (too expensive, overloaded)', (t) =>
  scenario(t, () => ({ status: 500, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception' }] } })),
);

t.test('the type history pages on an alias base: the version that refers sits on page 2', (t) =>
  scenario(t, (url, _base, v1) => {
    const other = (i: number) => ({
      resource: { resourceType: 'DocumentReference', id: `busy-${i}`, meta: { versionId: '2' }, status: 'current', content: [] },
    });
    return url.searchParams.get('page') === '2'
      ? {
          status: 200,
          body: {
            resourceType: 'Bundle',
            type: 'history',
            entry: [{ request: { method: 'DELETE', url: 'DocumentReference/gone' } }, { resource: v1 }],
          },
        }
      : {
          status: 200,
          body: {
            resourceType: 'Bundle',
            type: 'history',
            link: [{ relation: 'next', url: 'http://fhir.internal.example/fhir/DocumentReference/_history?page=2' }],
            entry: Array.from({ length: 50 }, (_, i) => other(i)),
          },
        };
  }),
);

t.test('more than 50 pages of other documents’ history since the write', (t) =>
  scenario(t, (url, base, v1) => {
    const page = Number(url.searchParams.get('page') ?? '1');
    const other = (i: number) => ({
      resource: { resourceType: 'DocumentReference', id: `busy-${page}-${i}`, meta: { versionId: '2' }, status: 'current', content: [] },
    });
    const last = page === 60;
    return {
      status: 200,
      body: {
        resourceType: 'Bundle',
        type: 'history',
        link: last ? [] : [{ relation: 'next', url: `${base}/DocumentReference/_history?page=${page + 1}` }],
        entry: last ? [{ resource: v1 }] : Array.from({ length: 50 }, (_, i) => other(i)),
      },
    };
  }),
);
