// The pieces the sweeper's scans and resume point are made of (attack round 4 of issue 13): a page
// is a Bundle of the kind asked for or no verdict; a next link is read on the upstream's base (on
// it, under it, or on an alias moved to it), never elsewhere; claims carry where a sweep stopped.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bundlePage, followableNext } from '../../src/binary/pending-lookup.js';
import { remember, resumePoint } from '../../src/binary/sweeper.js';
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
