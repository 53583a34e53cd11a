// Attack 13c (class: retention-class-escape). An unlinked blob's class comes from "the versions that
// referred to it" — read from the resource's `_history`, at most 50 pages of 50, newest first. When
// none of the versions read refers to the blob, the LAST version's categories are used instead. A
// writer who re-files a document (category changed, content replaced) and then updates it 2 500
// times pushes the versions that referred to the content out of reach: its class is taken from
// what the document became ("unlinked", 7 days), not what it was filed as (discharge summary,
// 7 years), and the content earlier versions still read (vread) is deleted after a week.
// The test upstream answers a history whole; the shim pages it as HAPI does (`_count`, `next`).
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { defaultRetention } from '../helpers/retention.js';

/** `hours` on, moved to the middle of its hour: a sweep never starts in the last seconds of its period (it would stop at once). */
const later = (hours: number): Date => new Date(Math.floor((Date.now() + hours * 3_600_000) / 3_600_000) * 3_600_000 + 30 * 60_000);

const DISCHARGE = { system: 'http://loinc.org', code: '34133-9' };
const UPDATES = 2_560;

t.test('a blob keeps the class it was filed under however many versions came after', async (t) => {
  const s = await stack(t);
  const retention = defaultRetention({
    classes: [{ name: 'discharge-summaries', keepDays: 2557, categories: ['http://loinc.org|34133-9'] }],
  });
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      category: [{ coding: [DISCHARGE] }],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const blob = (await store.list()).items[0].id;

  // Re-filed with other content, then updated many times (around the gateway: what any writer can do through it).
  for (let n = 0; n < UPDATES; n++) {
    const r = await fetch(`${s.up.url}/DocumentReference/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        id,
        status: 'current',
        description: `revision ${n}`,
        category: [{ coding: [{ system: 'urn:a13c', code: 'misc' }] }],
        content: [{ attachment: { contentType: 'text/plain', url: 'urn:none' } }],
      }),
    });
    await r.arrayBuffer();
    if (n === 0) t.equal(r.status, 200, 'updated');
  }

  // HAPI's paging of `_history`: `_count` entries a page, a `next` link on the same base.
  const upstream = new URL(s.up.url);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const paged = url.pathname.endsWith('/_history') && req.method === 'GET';
    const target = paged ? url.pathname : (req.url ?? '/');
    const fwd = request(
      { host: upstream.hostname, port: upstream.port, path: target, method: req.method, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        if (!paged || answer.statusCode !== 200) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        answer.on('data', (c: Buffer) => parts.push(c));
        answer.on('end', () => {
          const b = JSON.parse(Buffer.concat(parts).toString('utf8')) as { entry?: unknown[]; link?: unknown[] };
          const count = Number(url.searchParams.get('_count') ?? '20');
          const offset = Number(url.searchParams.get('_offset') ?? '0');
          const all = b.entry ?? [];
          const next = new URL(`${base}${url.pathname.slice(upstream.pathname.length)}`);
          next.searchParams.set('_count', String(count));
          next.searchParams.set('_offset', String(offset + count));
          const page = {
            ...b,
            total: all.length,
            entry: all.slice(offset, offset + count),
            link: offset + count < all.length ? [{ relation: 'next', url: next.toString() }] : [],
          };
          res.writeHead(200, { 'content-type': 'application/fhir+json' });
          res.end(JSON.stringify(page));
        });
      },
    );
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`;
  const first50 = (await (await fetch(`${base}/DocumentReference/${id}/_history?_count=50`)).json()) as {
    entry: unknown[];
    link: { relation: string }[];
  };
  t.equal(first50.entry.length, 50, 'history paged: 50 a page');
  t.equal(first50.link[0]?.relation, 'next', 'with a next link');

  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13c-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const run = (at: Date) =>
    sweep({
      store,
      upstream: new HttpPendingLookup({ base, timeoutMs: 20_000, rejectUnauthorized: true }),
      spoolDir: spool,
      retention,
      dryRun: false,
      holder: 'attack-13c',
      now: () => at,
    });
  // Fixed as no verdict: a history longer than the sweeper reads, with no referring version in
  // what it read, cannot say what the blob was filed as — it is kept, never given a guessed class.
  const first = await run(later(25));
  t.same(first.unlinked, [], 'not unlinked into a guessed class');
  t.match(first.kept, [{ id: blob, why: /no verdict/ }], 'kept, with why');
  await run(later(30 * 24));
  t.ok(await store.head(blob), 'kept past a month: its class is seven years');
  const v1 = await fetch(`${s.gw.base}/DocumentReference/${id}/_history/1`, { headers: s.auth });
  t.ok((await v1.text()).includes('"data":"JVBER'), 'version 1 still reads its content');
});
