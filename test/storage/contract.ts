// The BlobStore contract: every driver (filesystem, S3, Azure) runs these same tests against its
// real backing server. A driver file calls `blobStoreContract(t, name, make)`.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import type { Test } from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { eventually } from '../helpers/poll.js';
import { MISSING } from '../helpers/store-errors.js';

export interface ContractSubject {
  readonly store: BlobStore;
  /**
   * Everything physically in the backing store, whatever its state: files and temp files,
   * objects and in-progress multipart uploads, committed and uncommitted blobs. Used to prove
   * that a failed or deleted put leaves nothing behind.
   */
  residue(): Promise<string[]>;
  /** Flips one bit of the stored content at decoded offset `at`, behind the store's back (bit rot, a bad disk, a stray write). */
  corrupt(id: string, at: number): Promise<void>;
}

/** Bytes in uneven chunks, so drivers cannot rely on chunk alignment. */
export function chunked(data: Buffer, sizes: readonly number[] = [1, 7, 4096, 65_537]): Readable {
  const parts: Buffer[] = [];
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length];
    parts.push(data.subarray(at, at + n));
    at += n;
  }
  return Readable.from(parts);
}

/** A body that sends `first` and then fails, as a client that disconnects midway. */
export function failingBody(first: Buffer, error = new Error('client went away')): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(first);
      } else {
        setImmediate(() => this.destroy(error));
      }
    },
  });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const sha1 = (b: Buffer): string => createHash('sha1').update(b).digest('base64');

async function bytes(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export function blobStoreContract(t: Test, name: string, make: (t: Test) => Promise<ContractSubject>): void {
  t.test(`${name}: put streams content in and reports size and hashes; get streams it back`, async (t) => {
    const { store, residue } = await make(t);
    // Over one S3 part (5 MiB) and one Azure block buffer, in odd chunk sizes.
    const data = randomBytes(6 * 1024 * 1024 + 3);
    const info = await store.put(chunked(data), { contentType: 'application/pdf', owner: 'DocumentReference/1' });
    t.match(info.id, /^[a-z0-9-]{1,64}$/);
    t.equal(info.size, data.length);
    t.equal(info.sha256, sha256(data));
    t.equal(info.sha1, sha1(data));
    t.equal(info.contentType, 'application/pdf');
    t.equal(info.state, 'pending', 'a new blob is pending until the upstream accepts its resource');
    t.equal(info.owner, 'DocumentReference/1');
    t.ok(Date.parse(info.createdAt) <= Date.now() && Date.now() - Date.parse(info.createdAt) < 60_000, 'createdAt is now');
    const got = await store.get(info.id);
    t.same(got.info, info, 'get reports the same metadata');
    const back = await bytes(got.body);
    t.equal(back.length, data.length);
    t.ok(back.equals(data), 'byte-identical');
    t.same(await store.head(info.id), info);
    t.ok((await residue()).length > 0, 'residue sees the stored blob (so its emptiness elsewhere means something)');
  });

  t.test(`${name}: an empty blob`, async (t) => {
    const { store } = await make(t);
    const info = await store.put(Readable.from([]), { contentType: 'text/plain' });
    t.equal(info.size, 0);
    t.equal(info.sha256, sha256(Buffer.alloc(0)));
    t.equal((await bytes((await store.get(info.id)).body)).length, 0);
  });

  t.test(`${name}: byte ranges (inclusive) anywhere in the blob`, async (t) => {
    const { store } = await make(t);
    const data = randomBytes(300_000);
    const { id } = await store.put(chunked(data), { contentType: 'application/octet-stream' });
    for (const [start, end] of [
      [0, 0],
      [0, 99],
      [65_530, 65_545],
      [131_071, 131_073],
      [1000, 299_999],
      [299_999, 299_999],
      [0, 299_999],
    ] as const) {
      const got = await store.get(id, { start, end });
      const part = await bytes(got.body);
      t.ok(part.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
      t.equal(got.info.size, data.length, 'info still gives the whole size');
    }
    for (const bad of [
      { start: 10, end: 5 },
      { start: 0, end: 300_000 },
      { start: -1, end: 3 },
    ]) {
      await t.rejects(store.get(id, bad), RangeError, `range ${bad.start}-${bad.end} refused`);
    }
  });

  t.test(`${name}: a flipped bit is never served: not whole, not in a range, not at the start`, async (t) => {
    const { store, corrupt } = await make(t);
    const data = randomBytes(3 * CHUNK_BYTES + 100);
    const late = await store.put(chunked(data), { contentType: 'application/octet-stream' });
    const bad = CHUNK_BYTES + 5;
    await corrupt(late.id, bad);
    // Whole: the bytes that do arrive are the true ones, and the read fails before the end.
    const parts: Buffer[] = [];
    const err = await (async () => {
      for await (const c of (await store.get(late.id)).body) parts.push(c as Buffer);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    t.match(err, { code: 'BLOB_UNREADABLE' }, 'a whole read fails');
    const got = Buffer.concat(parts);
    t.ok(got.length <= bad, `nothing from the altered byte on (${got.length} bytes arrived)`);
    t.ok(got.equals(data.subarray(0, got.length)), 'and what arrived is the true content');
    const read = (start: number, end: number) => store.get(late.id, { start, end }).then((g) => bytes(g.body));
    await t.rejects(read(bad, bad), { code: 'BLOB_UNREADABLE' }, 'the altered byte alone');
    await t.rejects(read(bad - 10, bad + 10), { code: 'BLOB_UNREADABLE' }, 'a range across it');
    t.ok((await read(0, 99)).equals(data.subarray(0, 100)), 'a range before it is served');
    t.ok((await read(2 * CHUNK_BYTES, 2 * CHUNK_BYTES + 99)).equals(data.subarray(2 * CHUNK_BYTES, 2 * CHUNK_BYTES + 100)), 'and after');
    // At the start: refused before a single byte.
    const early = await store.put(chunked(data), { contentType: 'application/octet-stream' });
    await corrupt(early.id, 0);
    const first = await store
      .get(early.id)
      .then((g) => bytes(g.body))
      .then(
        (b) => b.length,
        (e: { code?: string }) => e.code,
      );
    t.equal(first, 'BLOB_UNREADABLE', 'no byte of a blob corrupt at its start');
  });

  t.test(`${name}: a claim is made once, whoever asks at the same time; listed; dropped; never listed as a blob`, async (t) => {
    const { store } = await make(t);
    const tries = await Promise.all(Array.from({ length: 8 }, (_, i) => store.claim('sweep-42', `replica-${i}`)));
    t.equal(tries.filter(Boolean).length, 1, 'exactly one of eight concurrent claims wins');
    t.equal(await store.claim('sweep-42', 'late'), false, 'a later one loses too');
    t.ok(await store.claim('sweep-43', 'replica-0'), 'another name is another claim');
    const claims = await store.claims();
    t.same(
      claims.map((c) => c.name),
      ['sweep-42', 'sweep-43'],
    );
    const winner = `replica-${tries.indexOf(true)}`;
    t.match(claims[0], { holder: winner });
    t.ok(Math.abs(Date.parse(claims[0].at) - Date.now()) < 60_000, 'with when it was made');
    t.same((await store.list()).items, [], 'claims are not blobs');
    await store.unclaim('sweep-42');
    await store.unclaim('sweep-42');
    t.ok(await store.claim('sweep-42', 'next'), 'claimable again once dropped');
    await t.rejects(store.claim('../x', 'h'), /not a claim name/);
  });

  t.test(`${name}: a claim keeps the note it was made with (where a sweep stopped)`, async (t) => {
    const { store } = await make(t);
    t.ok(await store.claim('sweep-resume-7', 'replica-0', '0123456789abcdef0123456789abcdef'));
    t.equal(await store.claim('sweep-resume-7', 'replica-1', 'ffff'), false, 'made once: the first note stays');
    t.ok(await store.claim('sweep-8', 'replica-0'));
    const claims = await store.claims();
    t.match(claims, [
      { name: 'sweep-8', holder: 'replica-0' },
      { name: 'sweep-resume-7', holder: 'replica-0', note: '0123456789abcdef0123456789abcdef' },
    ]);
    t.notOk('note' in claims[0], 'none without one');
    await t.rejects(store.claim('sweep-resume-9', 'h', 'x'.repeat(257)), /longer than 256/, 'a note past its bound is refused');
    t.same(
      (await store.claims()).map((c) => c.name),
      ['sweep-8', 'sweep-resume-7'],
      'and nothing made for it',
    );
  });

  t.test(`${name}: unknown and malformed ids are not found, never an error about something else`, async (t) => {
    const { store } = await make(t);
    for (const id of ['0123456789abcdef0123456789abcdef', '../../etc/passwd', 'A', '', 'a/b', '..', 'x'.repeat(65)]) {
      await t.rejects(store.get(id), MISSING, `get ${JSON.stringify(id)}`);
      t.equal(await store.head(id), undefined, `head ${JSON.stringify(id)}`);
      await t.rejects(store.setMeta(id, { state: 'linked' }), MISSING, `setMeta ${JSON.stringify(id)}`);
      await store.delete(id);
    }
  });

  t.test(`${name}: setMeta links a blob and records its owner; content is untouched`, async (t) => {
    const { store } = await make(t);
    const data = Buffer.from('hello, blob');
    const put = await store.put(chunked(data), { contentType: 'text/plain' });
    t.equal(put.owner, undefined);
    // Once the clock is past the put's millisecond, a later update must show in updatedAt.
    await eventually(() => Date.now() > Date.parse(put.updatedAt), "the clock passing the put's millisecond");
    const linked = await store.setMeta(put.id, { state: 'linked', owner: 'Binary/42' });
    t.equal(linked.state, 'linked');
    t.equal(linked.owner, 'Binary/42');
    t.equal(linked.createdAt, put.createdAt);
    t.ok(Date.parse(linked.updatedAt) > Date.parse(put.updatedAt), 'updatedAt moves forward');
    t.equal(linked.sha256, put.sha256);
    t.same(await store.head(put.id), linked, 'persisted');
    const got = await store.get(put.id);
    t.equal(await text(got.body), 'hello, blob');
    t.equal(got.info.state, 'linked');
  });

  t.test(`${name}: delete removes blob and metadata, and is idempotent`, async (t) => {
    const { store, residue } = await make(t);
    const before = await residue();
    const { id } = await store.put(chunked(randomBytes(70_000)), { contentType: 'image/png' });
    await store.delete(id);
    await store.delete(id);
    t.equal(await store.head(id), undefined);
    await t.rejects(store.get(id), MISSING);
    t.same(await residue(), before, 'nothing left behind');
  });

  t.test(`${name}: passing maxBytes rejects PAYLOAD_TOO_LARGE and leaves nothing`, async (t) => {
    const { store, residue } = await make(t);
    const before = await residue();
    const err = await store
      .put(chunked(randomBytes(6 * 1024 * 1024)), { contentType: 'application/pdf' }, { maxBytes: 5 * 1024 * 1024 + 1 })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    t.ok(err instanceof GatewayError && err.code === 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE');
    t.same(await residue(), before, 'no blob, no temp file, no metadata, no open upload');
    t.same((await store.list()).items, [], 'nothing listed');
    const exact = await store.put(chunked(randomBytes(1000)), { contentType: 'text/plain' }, { maxBytes: 1000 });
    t.equal(exact.size, 1000, 'exactly maxBytes is allowed');
  });

  t.test(`${name}: a body that fails midway rejects with its error and leaves nothing`, async (t) => {
    const { store, residue } = await make(t);
    const before = await residue();
    await t.rejects(store.put(failingBody(randomBytes(6 * 1024 * 1024)), { contentType: 'application/pdf' }), /client went away/);
    t.same(await residue(), before, 'nothing left behind');
  });

  t.test(`${name}: an abort signal stops the put and leaves nothing`, async (t) => {
    const { store, residue } = await make(t);
    const before = await residue();
    const ac = new AbortController();
    const body = new Readable({ read() {} });
    body.push(randomBytes(1024 * 1024));
    const p = store.put(body, { contentType: 'application/pdf' }, { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await t.rejects(p, { name: 'AbortError' });
    t.same(await residue(), before, 'nothing left behind');
  });

  t.test(`${name}: list pages through every blob with its metadata`, async (t) => {
    const { store } = await make(t);
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++)
      ids.add((await store.put(chunked(Buffer.from(`blob ${i}`)), { contentType: 'text/plain', owner: `Binary/${i}` })).id);
    const seen = new Map<string, string | undefined>();
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await store.list({ limit: 3, ...(cursor ? { cursor } : {}) });
      t.ok(page.items.length <= 3, 'respects limit');
      for (const item of page.items) seen.set(item.id, item.owner);
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < 10);
    t.same(new Set(seen.keys()), ids, 'every blob once');
    t.ok(pages >= 3, 'paged');
    for (const [id, owner] of seen) t.match(owner, /^Binary\/\d$/, `owner of ${id} listed`);
  });

  t.test(`${name}: list from an id starts there (inclusive), page by page, with the prefix too`, async (t) => {
    const { store } = await make(t);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await store.put(chunked(Buffer.from(`blob ${i}`)), { contentType: 'text/plain' })).id);
    ids.sort();
    const listFrom = async (from: string, prefix?: string): Promise<string[]> => {
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list({ from, limit: 2, ...(prefix ? { prefix } : {}), ...(cursor ? { cursor } : {}) });
        seen.push(...page.items.map((i) => i.id));
        cursor = page.cursor;
        pages++;
      } while (cursor && pages < 20);
      return seen;
    };
    t.same(await listFrom(ids[3]), ids.slice(3), 'from an existing id: it and every later one, in id order');
    t.same(await listFrom(`${ids[3]}0`), ids.slice(4), 'from between two ids: the later ones');
    t.same(await listFrom(ids[0]), ids, 'from the first: all');
    t.same(await listFrom('zzzz'), [], 'from past the last: none');
    t.same(
      await listFrom(ids[3], ids[5].slice(0, 1)),
      ids.slice(3).filter((id) => id.startsWith(ids[5].slice(0, 1))),
      'with a prefix',
    );
  });

  t.test(`${name}: concurrent puts get distinct ids and keep their own bytes`, async (t) => {
    const { store } = await make(t);
    const datas = Array.from({ length: 6 }, () => randomBytes(200_000));
    const infos = await Promise.all(datas.map((d) => store.put(chunked(d), { contentType: 'application/octet-stream' })));
    t.equal(new Set(infos.map((i) => i.id)).size, datas.length);
    for (let i = 0; i < datas.length; i++) t.ok((await bytes((await store.get(infos[i].id)).body)).equals(datas[i]), `blob ${i}`);
  });
}
