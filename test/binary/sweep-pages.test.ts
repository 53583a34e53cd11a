// The pieces the sweeper's scans and resume point are made of (attack round 4 of issue 13): a page
// is a Bundle of the kind asked for or no verdict; a next link is read on the upstream's base (on
// it, under it, or on an alias moved to it), never elsewhere; claims carry where a sweep stopped.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bundlePage, followableNext } from '../../src/binary/pending-lookup.js';
import { remember, resumePoint, walk } from '../../src/binary/sweeper.js';
import type { BlobInfo, BlobStore, ListOptions, ListPage } from '../../src/storage/blob-store.js';
import { claimRecord, parseClaim } from '../../src/storage/meta.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';

const BASE = 'http://fhir.example:8080/fhir';

t.test('a scan page is a Bundle of the kind asked for; anything else is no verdict', async (t) => {
  const search = { resourceType: 'Bundle', type: 'searchset', total: 0, entry: [] };
  t.equal(bundlePage(search, 'searchset'), search);
  t.same(
    bundlePage({ resourceType: 'Bundle', type: 'history' }, 'history'),
    { resourceType: 'Bundle', type: 'history' },
    'no entry: an empty page',
  );
  const refused = { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden' }] };
  t.throws(
    () => bundlePage(refused, 'searchset'),
    /no verdict: the upstream answered a searchset with OperationOutcome/,
    'an OperationOutcome answered 200',
  );
  t.throws(
    () => bundlePage({ resourceType: 'Bundle', type: 'searchset' }, 'history'),
    /a history with a Bundle of type searchset/,
    'another kind of Bundle',
  );
  t.throws(() => bundlePage({ resourceType: 'Bundle', type: 'transaction-response' }, 'searchset'), /no verdict/);
  t.throws(() => bundlePage({ resourceType: 'DocumentReference', id: 'x' }, 'searchset'), /with DocumentReference/, 'a resource');
  for (const body of [null, [], 'Bundle', 7, { type: 'searchset' }])
    t.throws(() => bundlePage(body, 'searchset'), /no verdict/, `not a Bundle: ${JSON.stringify(body)}`);
  t.throws(() => bundlePage({ resourceType: 'Bundle', type: 'searchset', entry: {} }, 'searchset'), /entry is not a list/);
});

t.test('a next link is followed on the upstream base (or an alias, moved to it), never elsewhere', async (t) => {
  t.equal(followableNext(`${BASE}/DocumentReference?page=2`, BASE), `${BASE}/DocumentReference?page=2`, 'under the base');
  t.equal(
    followableNext(`${BASE}?_getpages=abc&_getpagesoffset=50&_count=50`, BASE),
    `${BASE}?_getpages=abc&_getpagesoffset=50&_count=50`,
    'on the base (HAPI)',
  );
  const alias = 'http://hapi.internal/fhir';
  t.equal(followableNext(`${alias}?_getpages=abc`, BASE, [alias]), `${BASE}?_getpages=abc`, 'an alias, read on the base');
  t.equal(followableNext(`${alias}/Patient/_history?page=3`, BASE, [alias]), `${BASE}/Patient/_history?page=3`);
  t.equal(followableNext(`${alias}?_getpages=abc`, BASE), undefined, 'an alias not configured');
  t.equal(followableNext('http://elsewhere.example/fhir?_getpages=abc', BASE), undefined, 'another server');
  t.equal(followableNext(`${BASE}x/Patient`, BASE), undefined, 'a base that only starts the same');
  t.equal(followableNext(`${BASE}-other?_getpages=abc`, BASE), undefined);
  t.equal(followableNext(BASE, BASE), undefined, 'the base itself is no page');
  t.equal(followableNext(`${BASE}/../admin/blobs`, BASE), undefined, 'a path that leaves the base');
  t.equal(followableNext(`${BASE}/%2e%2e/admin`, BASE), undefined, 'encoded too');
  t.equal(followableNext(`${BASE}/Patient?page=2`, `${BASE}/`.replace(/\/$/, '')), `${BASE}/Patient?page=2`);
  t.equal(followableNext('http://h:1/Patient?page=2', 'http://h:1'), 'http://h:1/Patient?page=2', 'a base without a path');
  t.equal(followableNext(`${BASE}/Patient?x=[`, 'not a url'), undefined);
  t.equal(followableNext('not a url/x', 'not a url'), undefined, 'a base that is no URL');
  for (const link of [undefined, null, 42, { url: BASE }])
    t.equal(followableNext(link, BASE), undefined, `not a string: ${JSON.stringify(link)}`);
});

t.test('claim records carry a note; one that cannot be read is not a claim', async (t) => {
  const made = JSON.parse(claimRecord('sweep-resume-3', 'h', 'abc')) as Record<string, unknown>;
  t.match(made, { name: 'sweep-resume-3', holder: 'h', note: 'abc' });
  t.notOk('note' in (JSON.parse(claimRecord('sweep-3', 'h')) as object), 'no note, no field');
  t.throws(() => claimRecord('sweep-3', 'h', 'x'.repeat(257)), /longer than 256/);
  t.match(parseClaim(JSON.stringify(made), 'sweep-resume-3'), { name: 'sweep-resume-3', holder: 'h', note: 'abc' });
  t.equal(parseClaim(JSON.stringify({ ...made, note: 7 }), 'sweep-resume-3'), undefined, 'a note that is not a string');
  t.equal(parseClaim(JSON.stringify({ ...made, note: 'x'.repeat(257) }), 'sweep-resume-3'), undefined, 'a note too long');
});

t.test('the resume point: the newest earlier record with a blob id; remember() replaces the earlier ones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-resume-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: dir });
  t.equal(await resumePoint(store, 10), undefined, 'none recorded');
  await store.claim('sweep-resume-5', 'a', 'aaaa');
  await store.claim('sweep-resume-7', 'b', 'bbbb');
  await store.claim('sweep-resume-8', 'c', '../not-an-id');
  await store.claim('sweep-resume-9', 'd');
  await store.claim('sweep-resume-10', 'e', 'eeee');
  await store.claim('sweep-9', 'f', 'ffff');
  t.equal(await resumePoint(store, 10), 'bbbb', 'the newest before this period with a blob id; never this period’s own');
  t.equal(await resumePoint(store, 6), 'aaaa');
  await remember(store, 10, 'me', undefined);
  t.same(
    (await store.claims()).map((c) => c.name),
    ['sweep-9', 'sweep-resume-10'],
    'a full round: the earlier records dropped, a later one (a late sweep) left',
  );
  await remember(store, 11, 'me', 'cccc');
  t.same(
    (await store.claims()).map((c) => [c.name, c.note]),
    [
      ['sweep-9', 'ffff'],
      ['sweep-resume-11', 'cccc'],
    ],
  );
  t.equal(await resumePoint(store, 12), 'cccc');
});

/** A store listing `ids` in pages of `size` from its `from`; names before `from` come as empty pages (as Azure lists them). */
function listing(ids: readonly string[], size: number, byName = false): { store: BlobStore; asked: ListOptions[] } {
  const asked: ListOptions[] = [];
  const list = (o: ListOptions = {}): Promise<ListPage> => {
    asked.push(o);
    const at = o.cursor ? Number(o.cursor) : byName ? 0 : ids.findIndex((id) => id >= (o.from ?? ''));
    const start = at < 0 ? ids.length : at;
    const page = ids.slice(start, start + size);
    const items = page.filter((id) => id >= (o.from ?? '')).map((id) => ({ id }) as BlobInfo);
    return Promise.resolve({ items, ...(start + size < ids.length ? { cursor: String(start + size) } : {}) });
  };
  return { store: { list } as unknown as BlobStore, asked };
}

t.test('walk: the listing starts at `from`, stops at `until`, and looks at the deadline on every page', async (t) => {
  const ids = ['a1', 'a2', 'b1', 'b2', 'c1', 'c2', 'd1'];
  const visited: string[] = [];
  const visit = (info: BlobInfo) => {
    visited.push(info.id);
    return Promise.resolve(true);
  };
  const never = () => false;

  let l = listing(ids, 2);
  t.equal(await walk(l.store, 'b2', undefined, visit, never), undefined, 'to the end');
  t.same(visited, ['b2', 'c1', 'c2', 'd1'], 'from `from`, inclusive');
  t.equal(l.asked[0]?.from, 'b2', 'the store was asked to start there');
  t.ok(
    l.asked.every((o) => o.from === 'b2'),
    'on every page',
  );

  visited.length = 0;
  l = listing(ids, 2);
  t.equal(await walk(l.store, undefined, 'b2', visit, never), undefined, 'round to where the other leg began');
  t.same(visited, ['a1', 'a2', 'b1'], 'up to `until`, exclusive');
  t.equal(l.asked[0]?.from, undefined, 'from the first blob');

  // The deadline passes once the second page was listed: the walk stops at that page's first blob, though no blob it listed was due for work.
  visited.length = 0;
  l = listing(ids, 2);
  t.equal(await walk(l.store, 'a2', undefined, visit, () => l.asked.length > 1), 'b2', 'stopped where it got to');
  t.same(visited, ['a2', 'b1']);

  visited.length = 0;
  l = listing(ids, 2);
  t.equal(
    await walk(l.store, undefined, 'b1', visit, () => l.asked.length > 1),
    undefined,
    'late on a page at or past `until`: the round is done',
  );
  t.same(visited, ['a1', 'a2']);

  visited.length = 0;
  const stop = (info: BlobInfo) => Promise.resolve(info.id !== 'b1');
  t.equal(await walk(listing(ids, 2).store, undefined, undefined, stop, never), 'b1', 'visit said stop: that blob');

  // A store that lists the names before `from` without their records (Azure): empty pages.
  visited.length = 0;
  l = listing(ids, 2, true);
  t.equal(await walk(l.store, 'c2', undefined, visit, never), undefined);
  t.same(visited, ['c2', 'd1'], 'empty pages passed, then from `from`');
  visited.length = 0;
  l = listing(ids, 2, true);
  t.equal(await walk(l.store, 'c2', undefined, visit, () => l.asked.length > 1), 'c2', 'late on an empty page: where it began');
  t.same(visited, []);

  visited.length = 0;
  l = listing(['a1', 'b1', 'c1'], 1, true);
  t.equal(await walk(l.store, undefined, undefined, visit, () => false), undefined);
  t.same(visited, ['a1', 'b1', 'c1']);
});
