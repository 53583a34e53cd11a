// Attack 13c (class: retention-class-escape). An unlinked blob's class comes from "the versions that
// referred to it" — read from the resource's `_history`, at most 50 pages of 50, newest first. When
// none of the versions read refers to the blob, the LAST version's categories are used instead. A
// writer who re-files a document (category changed, content replaced) and then updates it 2 500
// times pushes the versions that referred to the content out of reach: its class is taken from
// what the document became ("unlinked", 7 days), not what it was filed as (discharge summary,
// 7 years), and the content earlier versions still read (vread) is deleted after a week.
// The test upstream answers a history whole; the shim pages it as HAPI does (`_count`, `next`).
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { stack } from '../helpers/binary-stack.js';
import { bodyOf, lookupAt, passOn, pdfDocument, postDocument, relay, sweepAt, sweepOptions } from '../helpers/lifecycle.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const DISCHARGE = { system: 'http://loinc.org', code: '34133-9' };
const UPDATES = 2_560;

t.test('a blob keeps the class it was filed under however many versions came after', async (t) => {
  const s = await stack(t);
  const retention = defaultRetention({
    classes: [{ name: 'discharge-summaries', keepDays: 2557, categories: ['http://loinc.org|34133-9'] }],
  });
  const created = await postDocument(s, pdfDocument({ category: [{ coding: [DISCHARGE] }] }));
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
  const base = await relay(t, s.up.url, (req) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (!url.pathname.endsWith('/_history') || req.method !== 'GET') return undefined;
    return {
      path: url.pathname,
      answer: (answer, res) => {
        if (answer.statusCode !== 200) return passOn(answer, res);
        void bodyOf(answer).then((body) => {
          const b = JSON.parse(body.toString('utf8')) as { entry?: unknown[]; link?: unknown[] };
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
    };
  });
  const first50 = (await (await fetch(`${base}/DocumentReference/${id}/_history?_count=50`)).json()) as {
    entry: unknown[];
    link: { relation: string }[];
  };
  t.equal(first50.entry.length, 50, 'history paged: 50 a page');
  t.equal(first50.link[0]?.relation, 'next', 'with a next link');

  const opts = sweepOptions(t, store, base, { upstream: lookupAt(base, 20_000), retention });
  // Fixed as no verdict: a history longer than the sweeper reads, with no referring version in
  // what it read, cannot say what the blob was filed as — it is kept, never given a guessed class.
  const first = await sweepAt(opts, midHour(25));
  t.same(first.unlinked, [], 'not unlinked into a guessed class');
  t.match(first.kept, [{ id: blob, why: /no verdict/ }], 'kept, with why');
  await sweepAt(opts, midHour(30 * 24));
  t.ok(await store.head(blob), 'kept past a month: its class is seven years');
  const v1 = await fetch(`${s.gw.base}/DocumentReference/${id}/_history/1`, { headers: s.auth });
  t.ok((await v1.text()).includes('"data":"JVBER'), 'version 1 still reads its content');
});
