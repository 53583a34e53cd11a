import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { UNREADABLE, unreadable } from '../helpers/store-errors.js';
import { DEFAULT_CHUNK_BYTES, HEADER_READ_BYTES, openHeader, sealedSpan, type KeyRing } from '../../src/storage/encryption.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import type * as FilesystemModule from '../../src/storage/filesystem.js';
import { blobStoreContract, chunked } from './contract.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-fs-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under dir, relative, temp files included. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => statSync(join(dir, p)).isFile()).sort();
}

async function bytes(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const ring = (active: string, keys: Record<string, Buffer>): KeyRing => ({ activeKeyId: active, keys: new Map(Object.entries(keys)) });

/** Flips one bit of a file at `offset`. */
function flip(path: string, offset: number): void {
  const b = readFileSync(path);
  b[offset] ^= 0x04;
  writeFileSync(path, b);
}

const blobPath = (dir: string, id: string) => join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.blob`);

blobStoreContract(t, 'filesystem', async (t) => {
  const dir = tempDir(t);
  return {
    store: new FilesystemBlobStore({ directory: dir }),
    residue: async () => files(dir),
    corrupt: async (id, at) => flip(blobPath(dir, id), at),
  };
});

const k1 = randomBytes(32);
const k2 = randomBytes(32);
blobStoreContract(t, 'filesystem (encrypted)', async (t) => {
  const dir = tempDir(t);
  const keys = ring('k1', { k1 });
  const store = new FilesystemBlobStore({ directory: dir, encryption: keys });
  return {
    store,
    residue: async () => files(dir),
    // The sealed chunk holding decoded byte `at`: any bit of it fails its authentication tag.
    corrupt: async (id, at) => {
      const path = blobPath(dir, id);
      const header = openHeader(readFileSync(path).subarray(0, HEADER_READ_BYTES), keys);
      flip(path, sealedSpan(header, (await store.head(id))!.size, at, at).from + 3);
    },
  };
});

t.test('layout: sharded by id, metadata beside the blob, owner-only permissions, no temp files', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir });
  const info = await store.put(chunked(Buffer.from('%PDF-1.4 x')), { contentType: 'application/pdf' });
  const shard = `${info.id.slice(0, 2)}/${info.id.slice(2, 4)}`;
  t.same(files(dir), [`${shard}/${info.id}.blob`, `${shard}/${info.id}.json`]);
  t.equal(statSync(join(dir, shard, `${info.id}.blob`)).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, shard, `${info.id}.json`)).mode & 0o777, 0o600);
  const record = JSON.parse(readFileSync(join(dir, shard, `${info.id}.json`), 'utf8')) as Record<string, unknown>;
  t.match(
    record,
    { v: 1, id: info.id, state: 'pending', owner: null, size: 10, contentType: 'application/pdf' },
    'a record a sweeper can read',
  );
});

t.test('two gateways sharing one directory see each other’s blobs and never collide', async (t) => {
  const dir = tempDir(t);
  const a = new FilesystemBlobStore({ directory: dir });
  const b = new FilesystemBlobStore({ directory: dir });
  const datas = Array.from({ length: 10 }, () => randomBytes(50_000));
  const infos = await Promise.all(datas.map((d, i) => (i % 2 ? a : b).put(chunked(d), { contentType: 'application/octet-stream' })));
  for (let i = 0; i < datas.length; i++)
    t.ok((await bytes((await (i % 2 ? b : a).get(infos[i].id)).body)).equals(datas[i]), `blob ${i} read by the other`);
  await b.setMeta(infos[1].id, { state: 'linked' });
  t.equal((await a.head(infos[1].id))?.state, 'linked');
  t.notOk(
    files(dir).some((f) => f.endsWith('.tmp')),
    'no temp files',
  );
});

t.test('encryption: content never on disk in the clear; ranges across chunk boundaries', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir, encryption: ring('k1', { k1 }) });
  const marker = Buffer.from('PATIENT-NAME-Jane-Doe-');
  const data = Buffer.concat(Array.from({ length: 12_000 }, () => marker)); // ~4 chunks of 64 KiB
  const info = await store.put(chunked(data), { contentType: 'text/plain' });
  const onDisk = readFileSync(join(dir, info.id.slice(0, 2), info.id.slice(2, 4), `${info.id}.blob`));
  t.equal(onDisk.indexOf(marker), -1, 'the plaintext is nowhere in the file');
  t.equal(info.sha256.length, 64, 'hashes are of the plaintext');
  const c = DEFAULT_CHUNK_BYTES;
  for (const [s, e] of [
    [c - 1, c],
    [c, 2 * c - 1],
    [c - 5, 3 * c + 5],
    [data.length - 1, data.length - 1],
    [0, data.length - 1],
  ]) {
    t.ok((await bytes((await store.get(info.id, { start: s, end: e })).body)).equals(data.subarray(s, e + 1)), `range ${s}-${e}`);
  }
  for (const size of [c, 2 * c, c + 1, 1]) {
    const d = randomBytes(size);
    const i = await store.put(chunked(d), { contentType: 'application/octet-stream' });
    t.ok((await bytes((await store.get(i.id)).body)).equals(d), `${size} bytes (chunk-boundary sizes) round-trip`);
  }
});

t.test('encryption: after rotation old blobs still open; a missing or wrong key is a clear error, never bytes', async (t) => {
  const dir = tempDir(t);
  const old = await new FilesystemBlobStore({ directory: dir, encryption: ring('k1', { k1 }) }).put(
    chunked(Buffer.from('sealed with k1')),
    { contentType: 'text/plain' },
  );
  const rotated = new FilesystemBlobStore({ directory: dir, encryption: ring('k2', { k1, k2 }) });
  const fresh = await rotated.put(chunked(Buffer.from('sealed with k2')), { contentType: 'text/plain' });
  t.equal((await bytes((await rotated.get(old.id)).body)).toString(), 'sealed with k1', 'old blob opens after rotation');
  t.equal((await bytes((await rotated.get(fresh.id)).body)).toString(), 'sealed with k2');

  const withoutK1 = new FilesystemBlobStore({ directory: dir, encryption: ring('k2', { k2 }) });
  await t.rejects(withoutK1.get(old.id), unreadable('blob was encrypted with key "k1", which is not configured'));
  const wrongK1 = new FilesystemBlobStore({ directory: dir, encryption: ring('k1', { k1: randomBytes(32) }) });
  await t.rejects(wrongK1.get(old.id), unreadable('key "k1" does not open this blob (wrong key material)'));
  const noKeys = new FilesystemBlobStore({ directory: dir });
  await t.rejects(noKeys.get(old.id), UNREADABLE, 'no keys configured at all');
  t.equal((await noKeys.head(old.id))?.sha256, old.sha256, 'metadata still readable without keys');
});

t.test('encryption: a flipped byte, swapped chunks or a truncated file fail authentication instead of yielding bytes', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir, encryption: ring('k1', { k1 }) });
  const data = randomBytes(3 * DEFAULT_CHUNK_BYTES + 100);
  const path = (id: string) => join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.blob`);
  const read = async (id: string) => bytes((await store.get(id)).body);

  const flipped = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const f = readFileSync(path(flipped.id));
  const headerLen = f.length - (data.length + 4 * 16);
  const sealed = DEFAULT_CHUNK_BYTES + 16;
  f[headerLen + sealed + 10] ^= 1;
  writeFileSync(path(flipped.id), f);
  await t.rejects(read(flipped.id), unreadable(/failed authentication at chunk 1/), 'flipped byte in chunk 1');
  // The chunks before the damage were authentic and may have streamed; the damaged one never does.
  const partial: Buffer[] = [];
  await t.rejects(
    (async () => {
      for await (const c of (await store.get(flipped.id)).body) partial.push(c as Buffer);
    })(),
  );
  t.ok(data.subarray(0, Buffer.concat(partial).length).equals(Buffer.concat(partial)), 'only authentic bytes were emitted');
  t.ok(Buffer.concat(partial).length <= DEFAULT_CHUNK_BYTES, 'nothing of the damaged chunk or after it');

  const swapped = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const s = readFileSync(path(swapped.id));
  const c0 = Buffer.from(s.subarray(headerLen, headerLen + sealed));
  s.copy(s, headerLen, headerLen + sealed, headerLen + 2 * sealed);
  c0.copy(s, headerLen + sealed);
  writeFileSync(path(swapped.id), s);
  await t.rejects(read(swapped.id), unreadable(/failed authentication at chunk 0/), 'chunks 0 and 1 swapped');
  const last = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const l = readFileSync(path(last.id));
  l[l.length - 20] ^= 1;
  writeFileSync(path(last.id), l);
  await t.rejects(read(last.id), unreadable(/failed authentication at chunk 3/), 'flipped byte in the last chunk');
  // A range is read and checked in whole digest chunks (CHUNK_BYTES of plaintext), which here
  // span every sealed chunk: the damaged one is in the span, so even the first bytes are refused.
  await t.rejects(
    bytes((await store.get(last.id, { start: 0, end: 99 })).body),
    unreadable(/failed authentication at chunk 3/),
    'a range whose digest chunk holds the damage is refused',
  );

  const cut = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  truncateSync(path(cut.id), statSync(path(cut.id)).size - 116);
  await t.rejects(store.get(cut.id), unreadable(/wrong length/), 'truncated file refused before streaming');
});

t.test('a put that fails leaves nothing in an encrypted store either', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir, encryption: ring('k1', { k1 }) });
  await t.rejects(store.put(chunked(randomBytes(200_000)), { contentType: 'x/y' }, { maxBytes: 100_000 }), { code: 'PAYLOAD_TOO_LARGE' });
  t.same(files(dir), []);
});

t.test('filesystem: a blob recorded before chunk digests is checked whole; its ranges are checked before they are served', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir });
  const data = randomBytes(600_000);
  const { id } = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const recordPath = blobPath(dir, id).replace(/\.blob$/, '.json');
  const { chunks: _chunks, ...legacy } = JSON.parse(readFileSync(recordPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(recordPath, JSON.stringify(legacy));
  t.notOk((await store.head(id))?.chunks, 'the record has no chunk digests');
  t.equal(await store.openPlainFile(id), undefined, 'no plain file to pump: such a blob is served through get()');
  t.ok((await bytes((await store.get(id)).body)).equals(data), 'intact: served whole');
  t.ok((await bytes((await store.get(id, { start: 10, end: 20 })).body)).equals(data.subarray(10, 21)), 'and a range of it');
  flip(blobPath(dir, id), 599_000);
  const parts: Buffer[] = [];
  const err = await (async () => {
    for await (const c of (await store.get(id)).body) parts.push(c as Buffer);
  })().catch((e: unknown) => e);
  t.match(err, { code: 'BLOB_UNREADABLE' }, 'altered: the whole read fails at its end');
  t.ok(Buffer.concat(parts).length < data.length, 'without its last bytes');
  await t.rejects(store.get(id, { start: 10, end: 20 }), { code: 'BLOB_UNREADABLE' }, 'a range is refused even far from the altered byte');
  // A record whose digests do not fit its size is not taken as verified.
  writeFileSync(recordPath, JSON.stringify({ ...legacy, chunks: { size: 262144, crc32: 'AAAAAA==' } }));
  await t.rejects(store.get(id), { code: 'BLOB_UNREADABLE' });
});

t.test('filesystem: a record that cannot be read is BLOB_UNREADABLE (never retried as an outage), and named by list', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir });
  const kept = await store.put(chunked(randomBytes(1000)), { contentType: 'application/octet-stream' });
  const { id } = await store.put(chunked(randomBytes(1000)), { contentType: 'application/octet-stream' });
  const recordPath = blobPath(dir, id).replace(/\.blob$/, '.json');
  truncateSync(recordPath, 40);
  await t.rejects(store.get(id), { code: 'BLOB_UNREADABLE' }, 'get');
  await t.rejects(store.head(id), { code: 'BLOB_UNREADABLE' }, 'head');
  const page = await store.list();
  t.same(
    page.items.map((i) => i.id),
    [kept.id],
    'list goes on past it',
  );
  t.same(page.unreadable, [id], 'and names it');
  const paged = await store.list({ limit: 1 });
  const next = paged.cursor ? await store.list({ cursor: paged.cursor, limit: 1 }) : undefined;
  t.same(
    [...paged.items, ...(next?.items ?? [])].map((i) => i.id),
    [kept.id],
    'paging past it too',
  );
});

t.test('filesystem: a listing from an id reads no record before it (not even an unreadable one)', async (t) => {
  const dir = tempDir(t);
  const store = new FilesystemBlobStore({ directory: dir });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await store.put(chunked(randomBytes(100)), { contentType: 'application/octet-stream' })).id);
  ids.sort();
  truncateSync(blobPath(dir, ids[1]).replace(/\.blob$/, '.json'), 40);
  const page = await store.list({ from: ids[2] });
  t.same(
    page.items.map((i) => i.id),
    ids.slice(2),
  );
  t.equal(page.unreadable, undefined, 'the broken record before it was never read');
  t.same((await store.list()).unreadable, [ids[1]], 'control: a listing from the first reads it');
  const later = await store.list({ from: ids[2], limit: 1 });
  t.same(
    (await store.list({ from: ids[2], cursor: later.cursor! })).items.map((i) => i.id),
    ids.slice(3),
    'a cursor past `from` goes on from the cursor',
  );
});

t.test('filesystem: a legacy range (no chunk digests) is served only from the file its check read, sealed or plain', async (t) => {
  for (const sealed of [false, true]) {
    const dir = tempDir(t);
    let swap: (() => void) | undefined;
    let opens = 0;
    // The second open of the content (the range, after the whole check) finds another blob's file renamed into place.
    const fsp = await import('node:fs/promises');
    const { FilesystemBlobStore: Store } = await t.mockImport<typeof FilesystemModule>('../../src/storage/filesystem.js', {
      'node:fs/promises': {
        ...fsp,
        open: async (...args: Parameters<typeof fsp.open>) => {
          if (String(args[0]).endsWith('.blob') && args[1] === 'r' && swap && ++opens === 2) swap();
          return fsp.open(...args);
        },
      },
    });
    const store = new Store({ directory: dir, ...(sealed ? { encryption: ring('k1', { k1 }) } : {}) });
    const a = randomBytes(300_000);
    const b = randomBytes(300_000);
    const ia = await store.put(chunked(a), { contentType: 'application/octet-stream' });
    const ib = await store.put(chunked(b), { contentType: 'application/octet-stream' });
    const recordPath = blobPath(dir, ia.id).replace(/\.blob$/, '.json');
    const { chunks: _chunks, ...legacy } = JSON.parse(readFileSync(recordPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(recordPath, JSON.stringify(legacy));
    const what = sealed ? 'sealed' : 'plain';
    t.ok((await bytes((await store.get(ia.id, { start: 10, end: 20 })).body)).equals(a.subarray(10, 21)), `${what}: control`);
    opens = 0;
    swap = () => renameSync(blobPath(dir, ib.id), blobPath(dir, ia.id));
    await t.rejects(
      store.get(ia.id, { start: 10, end: 20 }),
      { code: 'BLOB_UNREADABLE', cause: { message: /replaced while it was read/ } },
      `${what}: the file renamed into place between the check and the range is refused`,
    );
    t.equal(opens, 2, `${what}: one open for the check, one for the range`);
  }
});
