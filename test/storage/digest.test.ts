import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { DigestStream } from '../../src/storage/digest.js';

const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

t.test('size, SHA-256 (hex) and SHA-1 (base64, as FHIR Attachment.hash) of what streamed through', async (t) => {
  const data = Buffer.from('%PDF-1.7 some bytes'.repeat(1000));
  const d = new DigestStream();
  const chunks = [data.subarray(0, 7), data.subarray(7, 4096), data.subarray(4096)];
  await pipeline(Readable.from(chunks), d, sink());
  t.same(d.digest, {
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    sha1: createHash('sha1').update(data).digest('base64'),
    chunks: { size: CHUNK_BYTES, crc32: Buffer.from(crc32(data).toString(16).padStart(8, '0'), 'hex').toString('base64') },
  });
});

t.test('a CRC-32 per chunk, whatever the pieces the bytes arrive in', async (t) => {
  const data = randomBytes(2 * CHUNK_BYTES + 1000);
  const expected = Buffer.concat(
    [data.subarray(0, CHUNK_BYTES), data.subarray(CHUNK_BYTES, 2 * CHUNK_BYTES), data.subarray(2 * CHUNK_BYTES)].map((c) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(crc32(c) >>> 0);
      return b;
    }),
  ).toString('base64');
  for (const piece of [1 << 20, CHUNK_BYTES, 4099, 65536]) {
    const d = new DigestStream();
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += piece) pieces.push(data.subarray(i, i + piece));
    await pipeline(Readable.from(pieces), d, sink());
    t.same(d.digest.chunks, { size: CHUNK_BYTES, crc32: expected }, `pieces of ${piece}`);
  }
  const empty = new DigestStream();
  await pipeline(Readable.from([]), empty, sink());
  t.same(empty.digest.chunks, { size: CHUNK_BYTES, crc32: '' }, 'no bytes, no chunks');
});

t.test('passing maxBytes fails the stream with PAYLOAD_TOO_LARGE and no digest', async (t) => {
  const d = new DigestStream(10);
  const err = await pipeline(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), d, sink()).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof GatewayError, 'a GatewayError');
  t.equal((err as GatewayError).code, 'PAYLOAD_TOO_LARGE');
  t.equal(d.bytes, 12, 'counted up to the chunk that passed the limit');
  t.throws(() => d.digest, /before the stream ended/);
});

t.test('exactly maxBytes is allowed', async (t) => {
  const d = new DigestStream(12);
  await pipeline(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), d, sink());
  t.equal(d.digest.size, 12);
});
