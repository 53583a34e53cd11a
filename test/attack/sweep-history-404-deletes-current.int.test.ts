// Attack 13b: "a bare 404 proves nothing" was applied to the recheck of linked blobs, but not to
// the reconciliation of pending ones. A blob left pending by an update whose answer was lost
// (intent `Type/id`) is decided by the resource's `_history` alone: an upstream that answers
// instance history 404 (no history support, a layer in front that does not route `_history`)
// is taken as "a complete scan, no version refers to it" and the blob is deleted — while the
// resource's CURRENT version (GET Type/id, never asked) refers to it. The same 404 on a create's
// type search is believed as "none" too.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;

t.test('a pending blob the current version refers to is not deleted because `_history` answers 404', async (t) => {
  const s = await stack(t);
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const blob = findBlobRef(held.content[0].attachment._data.extension)!.id;
  // As an update of DocumentReference/{id} whose answer was lost leaves it: pending, intent the resource, 2 h old.
  const rec = join(s.gw.blobDir, blob.slice(0, 2), blob.slice(2, 4), `${blob}.json`);
  writeFileSync(
    rec,
    JSON.stringify({
      ...JSON.parse(readFileSync(rec, 'utf8')),
      state: 'pending',
      owner: null,
      intent: `DocumentReference/${id}`,
      createdAt: new Date(Date.now() - 2 * HOUR).toISOString(),
    }),
  );

  // The upstream as the sweeper reaches it: everything relayed, but history is not served (404).
  const upstream = new URL(s.up.url);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? '').includes('/_history')) {
      res.writeHead(404, { 'content-type': 'application/fhir+json' });
      res.end('{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported"}]}');
      return;
    }
    const fwd = request(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`;
  t.equal((await fetch(`${base}/DocumentReference/${id}`)).status, 200, 'the resource itself answers');

  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13b-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-13b',
    now: () => midHour(),
  });
  t.notOk(
    report.deleted.includes(blob),
    `not deleted (report: ${JSON.stringify({ deleted: report.deleted, kept: report.kept, linked: report.linked })})`,
  );
  t.ok(await store.head(blob), 'still in the store');
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: s.auth });
  t.match(await read.json(), { content: [{ attachment: { data: /^JVBER/ } }] }, 'the current version still reads its content');
});
