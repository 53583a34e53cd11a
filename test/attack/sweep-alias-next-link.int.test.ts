// Attack 13: the sweeper's pending reconciliation believes a search page whose `next` link it will
// not follow (the upstream names itself by another base — HAPI's server_address, the aliases of
// upstream.url) is the last one, and deletes a blob the CURRENT version of a resource on page 2
// refers to. "None" must only be believed from a scan that really saw every page.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF } from '../helpers/binary-stack.js';
import { defaultRetention } from '../helpers/retention.js';

const HOUR = 3_600_000;

t.test('a pending blob referred to by a current resource on a second page (next link on an alias base) is not deleted', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-a13-alias-'));
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13-alias-spool-'));
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

  // The FHIR server (reached as upstream.url) names itself by its own server_address in its paging links.
  const alias = 'http://fhir.internal.example/fhir';
  const dr = (id: string, blob?: string) => ({
    resourceType: 'DocumentReference',
    id,
    meta: { versionId: '1' },
    status: 'current',
    content: [
      {
        attachment: blob
          ? {
              contentType: 'application/pdf',
              _data: { extension: [{ url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference', valueString: blob }] },
            }
          : { url: `http://example.org/${id}.pdf` },
      },
    ],
  });
  const page1 = Array.from({ length: 50 }, (_, i) => ({ resource: dr(`other-${i}`) }));
  const page2 = [{ resource: dr('the-one', info.id) }];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/fhir+json');
    if (url.pathname === '/fhir/DocumentReference') {
      const second = url.searchParams.get('page') === '2';
      res.end(
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'searchset',
          total: 51,
          link: second ? [] : [{ relation: 'next', url: `${alias}/DocumentReference?page=2&_count=50` }],
          entry: second ? page2 : page1,
        }),
      );
      return;
    }
    if (url.pathname === '/fhir/DocumentReference/the-one') {
      res.end(JSON.stringify(dr('the-one', info.id)));
      return;
    }
    res.statusCode = 404;
    res.end('{"resourceType":"OperationOutcome","issue":[]}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;

  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-13',
  });
  t.same(report.deleted, [], 'nothing deleted: page 2 was never read, so "no resource refers to it" is not known');
  t.ok(await store.head(info.id), 'DocumentReference/the-one (current version) still has its content');
});
