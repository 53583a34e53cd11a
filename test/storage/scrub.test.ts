// Backup verification: every blob re-read and checked against its record; what fails is named
// with why, never with content; the store is never changed.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { scrub } from '../../src/storage/scrub.js';

function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-scrub-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: dir });
  const path = (id: string, ext: string) => join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.${ext}`);
  const put = async (bytes: Buffer) => (await store.put(Readable.from([bytes]), { contentType: 'application/octet-stream' })).id;
  const files = () =>
    (readdirSync(dir, { recursive: true }) as string[])
      .filter((p) => statSync(join(dir, p)).isFile())
      .map((p) => `${p}:${statSync(join(dir, p)).mtimeMs}`)
      .sort();
  return { store, path, put, files };
}

t.test('sound blobs pass; altered, truncated, missing and unreadable ones are named', async (t) => {
  const { store, path, put, files } = setup(t);
  const sound = await put(randomBytes(2 * CHUNK_BYTES + 7));
  const empty = await put(Buffer.alloc(0));
  const flipped = await put(randomBytes(CHUNK_BYTES + 10));
  const short = await put(randomBytes(5000));
  const gone = await put(randomBytes(100));
  const record = await put(randomBytes(100));
  const b = readFileSync(path(flipped, 'blob'));
  b[CHUNK_BYTES + 3] ^= 1;
  writeFileSync(path(flipped, 'blob'), b);
  truncateSync(path(short, 'blob'), 4000);
  rmSync(path(gone, 'blob'));
  truncateSync(path(record, 'json'), 10);
  const before = files();

  const report = await scrub(store);
  t.equal(report.listed, 6);
  t.equal(report.checked, 5, 'every blob with a readable record');
  t.equal(report.ok, 2, 'the sound one and the empty one');
  t.equal(report.bytes, 2 * CHUNK_BYTES + 7);
  const byId = new Map(report.failures.map((f) => [f.id, f]));
  t.match(byId.get(flipped), { kind: 'content', reason: /chunk 1 does not match/ });
  t.match(byId.get(short), { kind: 'content', reason: /fewer bytes|shorter/ });
  t.match(byId.get(gone), { kind: 'content' });
  t.match(byId.get(record), { kind: 'record', reason: /metadata record/ });
  t.notOk(byId.has(sound) || byId.has(empty));
  t.same(files(), before, 'nothing in the store was changed');
});

t.test('--since and --sample narrow what is read', async (t) => {
  const { store, put } = setup(t);
  const ids = [await put(randomBytes(10)), await put(randomBytes(10)), await put(randomBytes(10))];
  t.equal((await scrub(store, { since: new Date(Date.now() + 60_000) })).checked, 0, 'nothing created since a minute from now');
  t.equal((await scrub(store, { since: new Date(Date.now() - 60_000) })).checked, ids.length);
  let n = 0;
  const alternate = () => (n++ % 2 === 0 ? 0.1 : 0.9);
  t.equal((await scrub(store, { sample: 0.5, random: alternate })).checked, 2, 'half, by the chance source');
  const seen: number[] = [];
  await scrub(store, { onProgress: (r) => seen.push(r.checked) });
  t.same(seen, [1, 2, 3], 'progress after each blob');
});
