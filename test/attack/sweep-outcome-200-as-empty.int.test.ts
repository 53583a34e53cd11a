// Attack 14 (sweeper surface): the sweeper refuses a read answered 200 with something other than
// the resource ("answered with something else": no verdict), and a confirmation search that is not
// a Bundle — but its scans (a create's type searches, `_history` of an update's target, the type's
// history) read ANY 200 as a page: an OperationOutcome answered 200 has no entries and no `next`
// link, so it is taken as a complete scan that found nothing. A layer that refuses the sweeper's
// anonymous searches softly does exactly that (HAPI's ConsentInterceptor replaces a rejected
// answer by its OperationOutcome and keeps the 200). The blob the current version (or a version
// still read by vread) refers to is then deleted.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;
const REFUSED = JSON.stringify({
  resourceType: 'OperationOutcome',
  issue: [{ severity: 'error', code: 'forbidden', diagnostics: 'HAPI-0334: Access denied by rule: consent' }],
});

/** The upstream as the sweeper reaches it: reads relayed, searches and histories answered 200 with an OperationOutcome. */
async function softRefusals(t: Test, s: Stack): Promise<string> {
  const upstream = new URL(s.up.url);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '';
    if (path.includes('/_history') || path.includes('?')) {
      res.writeHead(200, { 'content-type': 'application/fhir+json' });
      res.end(REFUSED);
      return;
    }
    const fwd = request(
      { host: upstream.hostname, port: upstream.port, path, method: req.method, headers: { ...req.headers, host: upstream.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`;
}

async function createDoc(s: Stack): Promise<{ id: string; blob: string; rec: string }> {
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  const id = ((await created.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const blob = findBlobRef(held.content[0].attachment._data.extension)!.id;
  return { id, blob, rec: join(s.gw.blobDir, blob.slice(0, 2), blob.slice(2, 4), `${blob}.json`) };
}

function pending(rec: string, intent: string): void {
  writeFileSync(
    rec,
    JSON.stringify({
      ...JSON.parse(readFileSync(rec, 'utf8')),
      state: 'pending',
      owner: null,
      intent,
      createdAt: new Date(Date.now() - 2 * HOUR).toISOString(),
    }),
  );
}

async function runSweep(t: Test, s: Stack, base: string, hoursOn = 0) {
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a14-oo-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({ base, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: defaultRetention(),
    dryRun: false,
    holder: 'attack-14',
    now: () => midHour(hoursOn),
  });
  return { store, report };
}

t.test('a create whose answer was lost: the current version refers to its blob, searches answer 200 OperationOutcome', async (t) => {
  const s = await stack(t);
  const doc = await createDoc(s);
  pending(doc.rec, 'DocumentReference');
  const base = await softRefusals(t, s);
  const { store, report } = await runSweep(t, s, base);
  t.notOk(
    report.deleted.includes(doc.blob),
    `not deleted (${JSON.stringify({ deleted: report.deleted, kept: report.kept, linked: report.linked })})`,
  );
  t.ok(await store.head(doc.blob), 'still in the store');
  // Kept pending (no verdict), it is not served until the upstream can be asked: the next sweep
  // that can search links it, and the current version reads its content again.
  const next = await runSweep(t, s, s.up.url, 1);
  t.same(next.report.linked, [{ id: doc.blob, owner: `DocumentReference/${doc.id}` }], 'linked once the upstream answers its searches');
  const read = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, { headers: s.auth });
  t.match(await read.json(), { content: [{ attachment: { data: /^JVBER/ } }] }, 'the current version still reads its content');
});

t.test(
  'an update whose answer was lost, replaced since: version 1 still refers (vread), `_history` answers 200 OperationOutcome',
  async (t) => {
    const s = await stack(t);
    const doc = await createDoc(s);
    const upd = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
      method: 'PUT',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        id: doc.id,
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', url: 'http://example.org/other.pdf' } }],
      }),
    });
    t.equal(upd.status, 200);
    await upd.arrayBuffer();
    pending(doc.rec, `DocumentReference/${doc.id}`);
    const base = await softRefusals(t, s);
    const { store, report } = await runSweep(t, s, base);
    t.notOk(
      report.deleted.includes(doc.blob),
      `not deleted (${JSON.stringify({ deleted: report.deleted, kept: report.kept, linked: report.linked })})`,
    );
    t.ok(await store.head(doc.blob), 'still in the store: version 1 reads it');
  },
);
