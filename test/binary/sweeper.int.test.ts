// The retention sweeper against the real FHIR upstream and the filesystem store (issue 13): blobs a
// crash left pending are linked when a resource refers to them and deleted when none does, never
// while the upstream cannot be asked; crash leftovers past the temporary class go; linked blobs
// stay; two sweeps at once do not both act; a dry run changes nothing.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep, type SweepOptions } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { closedPort } from '../helpers/raw-http.js';

const HOUR = 3_600_000;
const RETENTION = { temporaryHours: 24, pendingGraceHours: 1, sweepPeriodMinutes: 60 };

t.test('a sweep reconciles pending blobs with the upstream and removes crash leftovers', async (t) => {
  const s = await stack(t);
  const dir = s.gw.blobDir;
  const store = new FilesystemBlobStore({ directory: dir });
  const spool = mkdtempSync(join(tmpdir(), 'fbg-sweep-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const recordPath = (id: string) => join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.json`);
  /** As a crash between the upstream's answer and the link leaves it: pending, written `hoursAgo` ago. */
  const unsettle = (id: string, hoursAgo = 2) => {
    const r = JSON.parse(readFileSync(recordPath(id), 'utf8')) as Record<string, unknown>;
    writeFileSync(
      recordPath(id),
      JSON.stringify({ ...r, state: 'pending', owner: null, createdAt: new Date(Date.now() - hoursAgo * HOUR).toISOString() }),
    );
  };
  const direct = async (intent?: string) => {
    const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', ...(intent ? { intent } : {}) });
    unsettle(info.id);
    return info.id;
  };

  // A Binary the upstream holds, whose link was lost; a DocumentReference the same; an update of one.
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const binaryId = createdId(created);
  const binaryBlob = (await blobRefOf(s, binaryId))!.id;
  t.match(JSON.parse(readFileSync(recordPath(binaryBlob), 'utf8')), { intent: 'Binary', state: 'linked' }, 'the write recorded its intent');
  unsettle(binaryBlob);
  const doc = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  const docId = ((await doc.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${docId}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const docBlob = findBlobRef(held.content[0].attachment._data.extension)!.id;
  unsettle(docBlob);
  const replaced = await upload(s, PDF(70_000), 'application/pdf', {}, 'PUT', `/Binary/${binaryId}`);
  await replaced.arrayBuffer();
  const updateBlob = (await blobRefOf(s, binaryId))!.id;
  t.match(JSON.parse(readFileSync(recordPath(updateBlob), 'utf8')), { intent: `Binary/${binaryId}` });
  unsettle(updateBlob);
  // The first blob was replaced upstream by the update: only the Binary's first version refers to it (vread still reads it).

  const orphan = await direct('Binary');
  const gone = await direct('Binary/does-not-exist');
  const inBundle = await direct(undefined);
  const fresh = (await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf', intent: 'Binary' })).id;
  const linked = await upload(s, PDF(70_000), 'application/pdf');
  await linked.arrayBuffer();
  const linkedBlob = (await blobRefOf(s, createdId(linked)))!.id;

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

  const opts = (over: Partial<SweepOptions> = {}): SweepOptions => ({
    store,
    upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
    spoolDir: spool,
    retention: RETENTION,
    dryRun: false,
    holder: 'test',
    ...over,
  });

  const dry = await sweep(opts({ dryRun: true }));
  t.same(dry.deleted.sort(), [orphan, gone].sort(), 'dry run: what would be deleted');
  t.equal(dry.leftovers.length + dry.spool.length, 2, 'and the leftovers');
  t.ok((await store.head(orphan)) !== undefined, 'dry run: nothing deleted');
  t.ok(existsSync(oldTmp) && existsSync(oldSpool), 'nothing removed');

  // The upstream down: nothing pending is decided; leftovers go all the same.
  const port = await closedPort();
  const down = await sweep(
    opts({ upstream: new HttpPendingLookup({ base: `http://127.0.0.1:${port}/fhir`, timeoutMs: 2000, rejectUnauthorized: true }) }),
  );
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
  t.same(r.kept, [{ id: inBundle, why: 'written inside a Bundle: no resource to ask the upstream about' }]);
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
  const dir = mkdtempSync(join(tmpdir(), 'fbg-sweep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: dir });
  const period = 60 * 60_000;
  const index = Math.floor(Date.now() / period);
  t.ok(await store.claim(`sweep-${index - 5}`, 'crashed'), 'a claim from long ago');
  t.ok(await store.claim(`sweep-${index - 1}`, 'previous'), 'the previous period’s, still possibly running');
  for (let i = 0; i < 3; i++) await store.put(Readable.from([Buffer.from('x')]), { contentType: 'text/plain', intent: 'Binary' });
  for (const info of (await store.list()).items) {
    const p = join(dir, info.id.slice(0, 2), info.id.slice(2, 4), `${info.id}.json`);
    writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), createdAt: new Date(Date.now() - 2 * HOUR).toISOString() }));
  }
  let asked = 0;
  // The clock reaches the period's end after the first blob.
  const end = (index + 1) * period;
  const r = await sweep({
    store,
    upstream: {
      findReference: async () => {
        asked++;
        return undefined;
      },
    },
    spoolDir: join(dir, 'none'),
    retention: RETENTION,
    dryRun: false,
    holder: 'test',
    now: () => new Date(asked === 0 ? index * period + 1000 : end),
  });
  t.equal(asked, 1, 'one blob, then the period ended');
  t.ok(r.stoppedEarly);
  t.same(r.staleClaims, [`sweep-${index - 5}`]);
  t.same(
    (await store.claims()).map((c) => c.name),
    [`sweep-${index - 1}`],
    'the old one cleared, the previous period’s and ours (dropped) not',
  );
});
