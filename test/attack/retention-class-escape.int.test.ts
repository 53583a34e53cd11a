// Attack 13: ways a blob leaves the store earlier than its retention class says.
import { createServer } from 'node:http';
import { blobExtension } from '../../src/fhir/blob-reference.js';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep, type SweepOptions } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const HOUR = 3_600_000;
const DISCHARGE = { coding: [{ system: 'http://loinc.org', code: '34133-9' }] };
const PROGRESS = { coding: [{ system: 'http://loinc.org', code: '11506-3' }] };

async function createDoc(s: Stack, category: unknown): Promise<{ id: string; blob: string }> {
  const r = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      category: [category],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  const id = ((await r.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  return { id, blob: findBlobRef(held.content[0].attachment._data.extension)!.id };
}

function sweeper(t: { teardown(fn: () => unknown): void }, s: Stack, retention: SweepOptions['retention']) {
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const run = (at: Date) =>
    sweep({
      store,
      upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
      spoolDir: spool,
      retention,
      dryRun: false,
      holder: 'attack-13',
      now: () => at,
    });
  return { store, run };
}

t.test('re-categorising a document does not shorten the retention of the content its earlier version held', async (t) => {
  const classes = [
    { name: 'discharge-summaries', keepDays: 2557, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9'] },
  ];
  const s = await stack(t, { retention: { classes } });
  const retention = defaultRetention({ classes });
  const doc = await createDoc(s, DISCHARGE);
  // Version 2: other content, and filed as a progress note.
  const upd = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      id: doc.id,
      status: 'current',
      category: [PROGRESS],
      content: [{ attachment: { contentType: 'application/pdf', url: 'http://example.org/elsewhere.pdf' } }],
    }),
  });
  t.equal(upd.status, 200);
  await upd.arrayBuffer();
  const { store, run } = sweeper(t, s, retention);
  const report = await run(midHour(2 * 24));
  t.match(report.unlinked, [{ id: doc.blob, retention: 'discharge-summaries' }], 'the class of the version that held it');
  // 30 days on, the discharge summary's PDF (still read by vread of version 1) must still be there.
  await run(midHour(30 * 24));
  t.ok(await store.head(doc.blob), 'kept for its class, not the 7 days of "unlinked"');
});

t.test('a pending blob of a document created and then deleted (its version 1 still in history) is not deleted at once', async (t) => {
  // A HAPI-like upstream: a deleted resource is gone from searches, its history stays (vread of
  // version 1 still answers, and through the gateway would still read the content).
  const dir = mkdtempSync(join(tmpdir(), 'fbg-a13-del-'));
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13-del-spool-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(spool, { recursive: true, force: true });
  });
  const store = new FilesystemBlobStore({ directory: dir });
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  const rec = join(dir, info.id.slice(0, 2), info.id.slice(2, 4), `${info.id}.json`);
  writeFileSync(
    rec,
    JSON.stringify({ ...JSON.parse(readFileSync(rec, 'utf8')), createdAt: new Date(Date.now() - 2 * HOUR).toISOString() }),
  );
  const v1 = {
    resourceType: 'DocumentReference',
    id: 'gone',
    meta: { versionId: '1' },
    status: 'current',
    category: [DISCHARGE],
    content: [
      {
        attachment: {
          contentType: 'application/pdf',
          _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] },
        },
      },
    ],
  };
  const bundle = (type: string, entry: unknown[]) => JSON.stringify({ resourceType: 'Bundle', type, link: [], entry });
  const server = createServer((req, res): void => {
    const url = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/fhir+json');
    if (url.pathname === '/fhir/DocumentReference') {
      res.end(bundle('searchset', []));
      return;
    }
    if (url.pathname === '/fhir/DocumentReference/_history' || url.pathname === '/fhir/DocumentReference/gone/_history') {
      res.end(bundle('history', [{ request: { method: 'DELETE', url: 'DocumentReference/gone' } }, { resource: v1 }]));
      return;
    }
    if (url.pathname === '/fhir/DocumentReference/gone/_history/1') {
      res.end(JSON.stringify(v1));
      return;
    }
    res.statusCode = url.pathname === '/fhir/DocumentReference/gone' ? 410 : 404;
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
  t.same(report.deleted, [], 'version 1 of DocumentReference/gone refers to it: not deleted');
  t.ok(await store.head(info.id), 'kept (linked, then unlinked for clinical-documents, as a linked blob of a deleted document is)');
});
