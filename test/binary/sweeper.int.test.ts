// The retention sweeper against the real FHIR upstream and the filesystem store (issue 13): blobs a
// crash left pending are linked when a resource refers to them and deleted when none does, never
// while the upstream cannot be asked; crash leftovers past the temporary class go; linked blobs
// stay; two sweeps at once do not both act; a dry run changes nothing.
import { randomUUID } from 'node:crypto';
import { existsSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { sweep, type SweepOptions } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { blobRefOf, PDF, stack, upload, uploadPdf } from '../helpers/binary-stack.js';
import {
  createDocument,
  documentBlob,
  editRecord,
  hoursAgo,
  knowsNothing,
  lookupAt,
  pdfDocument,
  readRecord,
  sweepAt,
  sweepOptions,
  tempDir,
  updateDocument,
} from '../helpers/lifecycle.js';
import { closedPort } from '../helpers/raw-http.js';
import { defaultRetention } from '../helpers/retention.js';
import { sweepScenario } from '../helpers/sweep-scenario.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const RETENTION = defaultRetention();

t.test('a sweep reconciles pending blobs with the upstream and removes crash leftovers', async (t) => {
  const s = await stack(t);
  const dir = s.gw.blobDir;
  const store = new FilesystemBlobStore({ directory: dir });
  const spool = tempDir(t, 'fbg-sweep-spool-');
  /** As a crash between the upstream's answer and the link leaves it: pending, written 2 h ago. */
  const unsettle = (id: string) => editRecord(dir, id, { state: 'pending', owner: null, createdAt: hoursAgo(2) });
  const direct = async (intent?: string) => {
    const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', ...(intent ? { intent } : {}) });
    unsettle(info.id);
    return info.id;
  };

  // A Binary the upstream holds, whose link was lost; a DocumentReference the same; an update of one.
  const { id: binaryId, blob: binaryBlob } = await uploadPdf(s);
  t.match(readRecord(dir, binaryBlob), { intent: 'Binary', state: 'linked' }, 'the write recorded its intent');
  unsettle(binaryBlob);
  const { id: docId, blob: docBlob } = await createDocument(s);
  unsettle(docBlob);
  const replaced = await upload(s, PDF(70_000), 'application/pdf', {}, 'PUT', `/Binary/${binaryId}`);
  await replaced.arrayBuffer();
  const updateBlob = (await blobRefOf(s, binaryId))!.id;
  t.match(readRecord(dir, updateBlob), { intent: `Binary/${binaryId}` });
  unsettle(updateBlob);
  // The first blob was replaced upstream by the update: only the Binary's first version refers to it (vread still reads it).

  const orphan = await direct('Binary');
  const gone = await direct('Binary/does-not-exist');
  const inBundle = await direct(undefined);
  const fresh = (await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf', intent: 'Binary' })).id;
  const { blob: linkedBlob } = await uploadPdf(s);

  // Crash leftovers: a store temp file and spool files, old and new.
  const shard = join(dir, orphan.slice(0, 2), orphan.slice(2, 4));
  const oldTmp = join(shard, `.${orphan}.abcdef.blob.tmp`);
  const newTmp = join(shard, `.${orphan}.123456.blob.tmp`);
  const oldSpool = join(spool, `fbg-body-${randomUUID()}.json`);
  const newSpool = join(spool, `fbg-body-${randomUUID()}.json`);
  const foreign = join(spool, 'someone-elses.json');
  for (const f of [oldTmp, newTmp, oldSpool, newSpool, foreign]) writeFileSync(f, 'x');
  const dayAgo = new Date(Date.now() - 25 * HOUR);
  for (const f of [oldTmp, oldSpool, foreign]) utimesSync(f, dayAgo, dayAgo);

  const opts = (over: Partial<SweepOptions> = {}): SweepOptions => sweepOptions(t, store, s.up.url, { spoolDir: spool, ...over });

  const dry = await sweep(opts({ dryRun: true }));
  t.same(dry.deleted.sort(), [orphan, gone].sort(), 'dry run: what would be deleted');
  t.equal(dry.leftovers.length + dry.spool.length, 2, 'and the leftovers');
  t.ok((await store.head(orphan)) !== undefined, 'dry run: nothing deleted');
  t.ok(existsSync(oldTmp) && existsSync(oldSpool), 'nothing removed');

  // The upstream down: nothing pending is decided; leftovers go all the same.
  const port = await closedPort();
  const down = await sweep(opts({ upstream: lookupAt(`http://127.0.0.1:${port}/fhir`, 2000) }));
  t.same([down.linked, down.deleted], [[], []], 'upstream unreachable: nothing linked or deleted');
  t.equal(down.kept.length, 6, 'every pending blob past its grace kept');
  t.same(down.leftovers, [join(orphan.slice(0, 2), orphan.slice(2, 4), `.${orphan}.abcdef.blob.tmp`)], 'the old temp file');
  t.same(down.spool, [oldSpool.split('/').pop()], 'the old spool file, not a foreign one');
  t.same(
    [existsSync(oldTmp), existsSync(newTmp), existsSync(oldSpool), existsSync(newSpool), existsSync(foreign)],
    [false, true, false, true, true],
  );

  const [a, b] = await Promise.all([sweep(opts({ holder: 'a' })), sweep(opts({ holder: 'b' }))]);
  t.same([a.claimed, b.claimed].sort(), [false, true], 'two sweeps at once: one acts');
  const r = a.claimed ? a : b;
  const idle = a.claimed ? b : a;
  t.same([idle.linked, idle.deleted, idle.leftovers, idle.spool], [[], [], [], []], 'the other does nothing');
  t.same(
    r.linked.sort((x, y) => x.id.localeCompare(y.id)),
    [
      { id: docBlob, owner: `DocumentReference/${docId}` },
      { id: updateBlob, owner: `Binary/${binaryId}` },
      { id: binaryBlob, owner: `Binary/${binaryId}` },
    ].sort((x, y) => x.id.localeCompare(y.id)),
    'blobs a resource refers to are linked to it',
  );
  t.same(r.deleted.sort(), [orphan, gone].sort(), 'blobs no resource refers to are deleted (in no version)');
  t.same(r.kept, [{ id: inBundle, why: 'no record of what it was written for: nothing to ask the upstream about' }]);
  for (const id of [orphan, gone]) t.equal(await store.head(id), undefined, `${id} gone`);
  const v1 = await fetch(`${s.gw.base}/Binary/${binaryId}/_history/1`, { headers: s.auth });
  t.equal(v1.status, 200, "the Binary's first version reads its content again");
  await v1.arrayBuffer();
  t.match(await store.head(docBlob), { state: 'linked', owner: `DocumentReference/${docId}` });
  t.match(await store.head(fresh), { state: 'pending' }, 'a pending blob within its grace is left alone');
  t.match(await store.head(linkedBlob), { state: 'linked' }, 'a linked blob is never touched');
  t.same(await store.claims(), [], 'the claim is dropped when the sweep ends');

  // The relinked content still reads through the gateway.
  const back = await fetch(`${s.gw.base}/DocumentReference/${docId}`, { headers: s.auth });
  t.match(await back.json(), { content: [{ attachment: { data: /.+/ } }] }, 'the relinked DocumentReference inflates again');
});

t.test('a sweep stops at its period’s end, and clears claims its holders left behind', async (t) => {
  const dir = tempDir(t, 'fbg-sweep-');
  const store = new FilesystemBlobStore({ directory: dir });
  const period = 60 * 60_000;
  const index = Math.floor(Date.now() / period);
  t.ok(await store.claim(`sweep-${index - 5}`, 'crashed'), 'a claim from long ago');
  t.ok(await store.claim(`sweep-${index - 1}`, 'previous'), 'the previous period’s, still possibly running');
  for (let i = 0; i < 3; i++) await store.put(Readable.from([Buffer.from('x')]), { contentType: 'text/plain', intent: 'Binary' });
  for (const info of (await store.list()).items) editRecord(dir, info.id, { createdAt: hoursAgo(2) });
  const upstream = knowsNothing();
  // The clock reaches the period's end after the first blob.
  const end = (index + 1) * period;
  const r = await sweep({
    store,
    upstream,
    spoolDir: join(dir, 'none'),
    retention: RETENTION,
    dryRun: false,
    holder: 'test',
    now: () => new Date(upstream.asked === 0 ? index * period + 1000 : end),
  });
  t.equal(upstream.asked, 1, 'one blob, then the period ended');
  t.ok(r.stoppedEarly);
  t.same(r.staleClaims, [`sweep-${index - 5}`]);
  const second = (await store.list()).items[0]?.id;
  t.match(
    (await store.claims()).map((c) => ({ name: c.name, note: c.note })),
    [{ name: `sweep-${index - 1}` }, { name: `sweep-resume-${index}`, note: second }],
    'the old one cleared, the previous period’s and ours (dropped) not; where it stopped recorded',
  );
});

t.test('the next sweep goes on where the last stopped, round to where it began; a full round leaves no record', async (t) => {
  const dir = tempDir(t, 'fbg-sweep-');
  const store = new FilesystemBlobStore({ directory: dir });
  const period = 60 * 60_000;
  for (let i = 0; i < 4; i++) await store.put(Readable.from([Buffer.from('x')]), { contentType: 'text/plain', intent: 'Binary' });
  const ids = (await store.list()).items.map((i) => i.id);
  t.same(ids, [...ids].sort(), 'listed in id order');
  for (const id of ids) editRecord(dir, id, { createdAt: hoursAgo(2) });
  const run = async (index: number, budget: number) => {
    const asked: string[] = [];
    const report = await sweep({
      store,
      // Never a verdict: every blob is kept, and asked again by every sweep that reaches it.
      upstream: {
        findReference: async (_intent, blob) => {
          asked.push(blob.id);
          throw new Error('no verdict: too large to scan');
        },
        currentReference: () => Promise.reject(new Error('not asked')),
      },
      spoolDir: join(dir, 'none'),
      retention: RETENTION,
      dryRun: false,
      holder: `test-${index}`,
      // The period ends once `budget` blobs were asked.
      now: () => new Date(asked.length < budget ? index * period + 1000 : (index + 1) * period),
    });
    return { asked, report };
  };
  const base = Math.floor(Date.now() / period);
  const first = await run(base, 2);
  t.same(first.asked, ids.slice(0, 2), 'the first sweep asks two, then its period ends');
  t.match(first.report, { stoppedEarly: true, resumedAt: null });
  const second = await run(base + 1, 99);
  t.same(second.asked, [...ids.slice(2), ...ids.slice(0, 2)], 'the next goes on at the third, then round from the first');
  t.match(second.report, { stoppedEarly: false, resumedAt: ids[2] });
  t.same(await store.claims(), [], 'a full round: nothing to resume, the earlier record dropped');
  const third = await run(base + 2, 3);
  t.same(third.asked, ids.slice(0, 3), 'so the next begins at the first blob');
  t.match(third.report, { stoppedEarly: true, resumedAt: null });
  const fourth = await run(base + 3, 2);
  t.same(fourth.asked, [ids[3], ids[0]], 'stopped in the round after the wrap: that is where the next goes on');
  t.match(fourth.report, { stoppedEarly: true, resumedAt: ids[3] });
  t.match(
    (await store.claims()).map((c) => ({ name: c.name, note: c.note })),
    [{ name: `sweep-resume-${base + 3}`, note: ids[1] }],
  );
  const dry = await sweep({
    store,
    upstream: { findReference: () => Promise.resolve(undefined), currentReference: () => Promise.reject(new Error('not asked')) },
    spoolDir: join(dir, 'none'),
    retention: RETENTION,
    dryRun: true,
    holder: 'dry',
    now: () => new Date((base + 4) * period + 1000),
  });
  t.match(dry, { resumedAt: ids[1], deleted: [ids[1], ids[2], ids[3], ids[0]] }, 'a dry run reports from there too');
  t.equal((await store.claims()).length, 1, 'and records nothing');
});

t.test('linked blobs no current version refers to become unlinked, kept for their class, then deleted', async (t) => {
  const s = await stack(t);
  const dir = s.gw.blobDir;
  const store = new FilesystemBlobStore({ directory: dir });
  const record = (id: string) => readRecord(dir, id);
  /** As if last checked 25 h ago. */
  const age = (id: string) => editRecord(dir, id, { updatedAt: hoursAgo(25) });
  const summary = { coding: [{ system: 'http://loinc.org', code: '34133-9' }] };

  // A discharge summary, updated with new content: its first blob is only in version 1 now.
  const { id: docId, blob: first } = await createDocument(s, { category: [summary] });
  await updateDocument(t, s, docId, pdfDocument({ category: [summary] }));
  const second = await documentBlob(s, docId);
  // A document of another category, deleted.
  const { id: otherId, blob: otherBlob } = await createDocument(s, {
    category: [{ coding: [{ system: 'http://loinc.org', code: '11506-3' }] }],
  });
  // Binaries, deleted: one uploaded for a patient's consent (the seed's X-File-Metadata), one plain.
  const { id: consentId, blob: consentBlob } = await uploadPdf(s, { 'x-file-metadata': '{"purpose":"patient_consent"}' });
  t.match(record(consentBlob), { purpose: 'patient_consent' }, 'the upload’s purpose is recorded with its blob');
  const { id: plainId, blob: plainBlob } = await uploadPdf(s);
  for (const path of [`Binary/${consentId}`, `Binary/${plainId}`, `DocumentReference/${otherId}`]) {
    const del = await fetch(`${s.gw.base}/${path}`, { method: 'DELETE', headers: s.auth });
    t.ok(del.status < 300, `DELETE ${path}`);
    await del.arrayBuffer();
  }
  const { id: freshId, blob: freshBlob } = await uploadPdf(s);
  const del = await fetch(`${s.gw.base}/Binary/${freshId}`, { method: 'DELETE', headers: s.auth });
  await del.arrayBuffer();
  for (const id of [first, second, otherBlob, consentBlob, plainBlob]) age(id);

  const retention: SweepOptions['retention'] = {
    ...RETENTION,
    classes: [
      { name: 'consents', keepDays: 3650, purposes: ['patient_consent'] },
      { name: 'discharge-summaries', keepDays: 2557, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9'] },
    ],
  };
  const opts = sweepOptions(t, store, s.up.url, { spoolDir: join(dir, 'no-spool'), retention });

  const now = new Date();
  // A base that answers 404 to everything (a wrong path, a layer hiding resources) proves nothing.
  const blind = await sweepAt({ ...opts, upstream: lookupAt(`${s.up.url}/nothing-here`) }, now);
  t.same([blind.unlinked, blind.deleted, blind.checked], [[], [], 0], 'a bare 404 unlinks nothing');
  t.equal(blind.kept.length, 5, 'every due blob kept, with why');
  t.match(blind.kept[0], { why: /no verdict/ });
  const r = await sweepAt(opts, now);
  const classes = Object.fromEntries(r.unlinked.map((u) => [u.id, [u.retention, Math.round((Date.parse(u.until) - now.getTime()) / DAY)]]));
  t.same(
    classes,
    {
      [first]: ['discharge-summaries', 2557],
      [otherBlob]: ['unlinked', 7],
      [consentBlob]: ['consents', 3650],
      [plainBlob]: ['unlinked', 7],
    },
    'each blob no current version refers to gets its class: by category, by purpose, the default',
  );
  t.equal(r.checked, 1, 'the current content was checked and is still referred to');
  t.same(r.deleted, [], 'nothing deleted yet');
  t.match(record(first), { state: 'unlinked', retention: 'discharge-summaries', owner: `DocumentReference/${docId}` });
  t.ok(Date.parse(record(second).updatedAt as string) > Date.now() - HOUR, 'the checked record is touched: next check a day away');
  t.match(record(freshBlob), { state: 'linked' }, 'a blob checked within recheckHours is not asked about');

  // Version 1 still reads its content while its class keeps it.
  const v1 = await fetch(`${s.gw.base}/DocumentReference/${docId}/_history/1`, { headers: s.auth });
  const v1Body = (await v1.json()) as { content: { attachment: { data?: string; size: number } }[] };
  const v1Att = v1Body.content[0].attachment;
  t.ok(v1Att.size > 70_000 && Buffer.from(v1Att.data ?? '', 'base64').length === v1Att.size, 'vread inflates the unlinked blob');

  // A blob unlinked by mistake (its resource refers to it again) is linked back when its time comes.
  editRecord(dir, second, { state: 'unlinked', retention: 'unlinked', retainUntil: new Date(Date.now() - 1000).toISOString() });

  // Eight days on: the default class is over, the others are not.
  const later = await sweepAt(opts, new Date(now.getTime() + 8 * DAY));
  t.same(later.deleted.sort(), [otherBlob, plainBlob].sort(), 'unlinked past their class: deleted');
  t.same(later.linked, [{ id: second, owner: `DocumentReference/${docId}` }], 'referred to again: linked');
  t.notOk('retainUntil' in record(second), 'and its class dropped');
  for (const id of [otherBlob, plainBlob]) t.equal(await store.head(id), undefined);
  t.match(await store.head(first), { state: 'unlinked' }, 'a clinical document stays for its years');
  t.match(await store.head(consentBlob), { state: 'unlinked' });
  const linkedNow = await fetch(`${s.gw.base}/DocumentReference/${docId}`, { headers: s.auth });
  t.equal(linkedNow.status, 200, 'the current version reads');
  await linkedNow.arrayBuffer();
});

t.test('a malformed X-File-Metadata refuses the upload before anything is stored', async (t) => {
  const s = await stack(t);
  for (const header of ['not json', '[1]', '{"purpose": 7}', '{"purpose": "has space"}']) {
    const r = await upload(s, PDF(5000), 'application/pdf', { 'x-file-metadata': header });
    t.equal(r.status, 400, header);
    t.match(JSON.stringify(await r.json()), /X-File-Metadata/);
  }
  t.same((await new FilesystemBlobStore({ directory: s.gw.blobDir }).list()).items, [], 'nothing stored');
  const other = await upload(s, PDF(5000), 'application/pdf', { 'x-file-metadata': '{"title":"no purpose"}' });
  t.equal(other.status, 400, 'an unknown key is refused, not dropped');
  await other.arrayBuffer();
  const big = await upload(s, PDF(5000), 'application/pdf', { 'x-file-metadata': `{"purpose":"a","x":"${'y'.repeat(2000)}"}` });
  t.equal(big.status, 400, 'past 1 KiB');
  await big.arrayBuffer();
  const ok = await upload(s, PDF(5000), 'application/pdf', { 'x-file-metadata': '{}' });
  t.equal(ok.status, 201, 'no purpose at all is fine');
  await ok.arrayBuffer();
});

sweepScenario(t, 'filesystem', async (t) => {
  return { storage: { driver: 'filesystem', filesystem: { directory: tempDir(t, 'fbg-sweep-fs-') } } };
});

t.test('files uploaded on their own (GraphQL uploadFile) and never bound are kept retention.temporaryHours, then deleted', async (t) => {
  const s = await stack(t);
  const dir = s.gw.blobDir;
  const store = new FilesystemBlobStore({ directory: dir });
  const put = async (hours: number) => {
    const info = await store.put(Readable.from([PDF(3000)]), {
      contentType: 'application/pdf',
      upload: { by: 'https://idp#alice', for: 'Patient/123' },
    });
    editRecord(dir, info.id, { createdAt: hoursAgo(hours) });
    return info.id;
  };
  const old = await put(25);
  const recent = await put(2);
  const r = await sweep(sweepOptions(t, store, s.up.url));
  t.same(r.deleted, [old], 'past temporaryHours (24): deleted');
  t.same(r.kept, [{ id: recent, why: 'an upload not bound to a resource yet (kept retention.temporaryHours)' }]);
  t.equal(await store.head(old), undefined);
  t.match(
    await store.head(recent),
    { state: 'pending', upload: { by: 'https://idp#alice', for: 'Patient/123' } },
    'the record keeps who and for whom',
  );
  // An old upload being bound (its claim held): kept, whatever its age; its intent can be taken back.
  const binding = await put(30);
  await store.setMeta(binding, { intent: 'DocumentReference' });
  t.equal(await store.claim(`bind-${binding}`, 'a-request'), true);
  const r2 = await sweep(sweepOptions(t, store, s.up.url));
  t.same(
    r2.kept.find((k) => k.id === binding),
    { id: binding, why: 'an upload being bound to a resource' },
  );
  await store.unclaim(`bind-${binding}`);
  await store.setMeta(binding, { intent: null });
  t.notOk('intent' in (await store.head(binding))!, 'intent: null removes it');
});
