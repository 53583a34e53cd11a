// Serving a local file through reused buffers: exact bytes, ranges, backpressure, an early exit;
// every chunk checked against its recorded digest before any of it is written.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import type { BlobInfo } from '../../src/storage/blob-store.js';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { DigestStream } from '../../src/storage/digest.js';
import { FilePump } from '../../src/storage/file-pump.js';
import { newInfo } from '../../src/storage/meta.js';

const dir = mkdtempSync(join(tmpdir(), 'fbg-pump-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const content = randomBytes(3 * 1024 * 1024 + 123);
const path = join(dir, 'blob');
writeFileSync(path, content);

async function infoOf(bytes: Buffer): Promise<BlobInfo> {
  const d = new DigestStream();
  await pipeline(Readable.from([bytes]), d, new Writable({ write: (_c, _e, cb) => cb() }));
  return newInfo('b10b', d.digest, { contentType: 'application/octet-stream' });
}
const info = await infoOf(content);

/** A consumer that copies what it gets, slowly and with a small buffer: buffers must not be reused before it is done with them. */
function slowSink(highWaterMark = 16 * 1024) {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      const copy = Buffer.from(chunk);
      setTimeout(() => {
        parts.push(copy);
        cb();
      }, 1);
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

async function pump(file: string, start: number, end: number, sink: Writable, blob = info): Promise<void> {
  const p = await FilePump.open(await open(file, 'r'), blob, start, end);
  await p.to(sink);
}

t.test('whole file and ranges arrive exactly, through a slow consumer', async (t) => {
  // A large highWaterMark lets writes queue up: a buffer reused before its write completed would show here.
  for (const [start, end, hwm] of [
    [0, content.length - 1, 8 << 20],
    [0, content.length - 1, 16 << 10],
    [1, 262_144, 8 << 20],
    [262_143, 262_144, 16 << 10],
    [CHUNK_BYTES, 2 * CHUNK_BYTES - 1, 16 << 10],
    [content.length - 5, content.length - 1, 16 << 10],
  ] as const) {
    const { sink, bytes } = slowSink(hwm);
    await pump(path, start, end, sink);
    await new Promise<void>((r) => sink.end(r));
    t.ok(bytes().equals(content.subarray(start, end + 1)), `${start}-${end}, highWaterMark ${hwm}`);
  }
});

t.test('a consumer that goes away stops the copy and the file is closed', async (t) => {
  const { sink } = slowSink();
  const fh = await open(path, 'r');
  const done = (await FilePump.open(fh, info, 0, content.length - 1)).to(sink);
  setTimeout(() => sink.destroy(), 20);
  await done;
  await t.rejects(fh.stat(), { code: 'EBADF' }, 'file handle closed');
});

t.test('a file shorter than its record is an error, not a short body taken for whole', async (t) => {
  const short = join(dir, 'short');
  writeFileSync(short, content.subarray(0, content.length - 10));
  const { sink, bytes } = slowSink();
  await t.rejects(pump(short, 0, content.length - 1, sink), { code: 'BLOB_UNREADABLE' });
  await new Promise<void>((r) => sink.end(r));
  t.equal(bytes().length, content.length - 123, 'nothing of the short last chunk was written');
});

t.test('a flipped byte: open() refuses a corrupt first chunk; to() stops before a corrupt later one', async (t) => {
  for (const at of [0, 5, CHUNK_BYTES - 1]) {
    const bad = join(dir, `bad-${at}`);
    const copy = Buffer.from(content);
    copy[at] ^= 0x01;
    writeFileSync(bad, copy);
    const fh = await open(bad, 'r');
    await t.rejects(FilePump.open(fh, info, 0, content.length - 1), { code: 'BLOB_UNREADABLE' }, `byte ${at}: refused up front`);
    await t.rejects(fh.stat(), { code: 'EBADF' }, 'and the file closed');
  }
  const at = 2 * CHUNK_BYTES + 17;
  const bad = join(dir, 'bad-late');
  const copy = Buffer.from(content);
  copy[at] ^= 0x80;
  writeFileSync(bad, copy);
  const { sink, bytes } = slowSink(8 << 20);
  const err = await pump(bad, 0, content.length - 1, sink).catch((e: unknown) => e);
  t.match(err, { code: 'BLOB_UNREADABLE' });
  t.match(String((err as Error).cause), /chunk 2 does not match/);
  await new Promise<void>((r) => sink.end(r));
  t.ok(bytes().equals(content.subarray(0, 2 * CHUNK_BYTES)), 'exactly the chunks before the corrupt one were written');
  // A range that does not touch the corrupt chunk is served; one that does is not.
  const { sink: s2, bytes: b2 } = slowSink();
  await pump(bad, 10, CHUNK_BYTES + 10, s2);
  await new Promise<void>((r) => s2.end(r));
  t.ok(b2().equals(content.subarray(10, CHUNK_BYTES + 11)));
  await t.rejects(pump(bad, at, at, slowSink().sink), { code: 'BLOB_UNREADABLE' }, 'a one-byte range in the corrupt chunk');
});

t.test('a record without chunk digests cannot be pumped (the store serves such blobs by checking them whole)', async (t) => {
  const { chunks: _chunks, ...legacy } = info;
  await t.rejects(pump(path, 0, 10, slowSink().sink, legacy), { code: 'BLOB_UNREADABLE' });
});
