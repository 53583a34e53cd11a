import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { crc32 } from './crc32.js';
import type { BlobInfo, ByteRange, ChunkDigests } from './blob-store.js';
import { blobUnreadable } from './blob-store.js';

/**
 * Integrity on every read. At write time every driver records, beside the content's SHA-256, a
 * CRC-32 of each fixed-size chunk (`BlobInfo.chunks`); on every read the bytes are held chunk by
 * chunk and released only once their chunk matches, so a corrupted, truncated or swapped blob is
 * never served — not whole, not a Range of it, not inflated into a resource.
 *
 * Why CRC-32 per chunk and not SHA-256 on read: the threat is corruption (a flipped bit on disk,
 * a torn write, an object replaced by another), which a CRC detects with certainty for any burst
 * up to 32 bits and otherwise misses with probability 2^-32 per chunk; whoever could forge a
 * chunk could as well rewrite the metadata record holding the digests. SHA-256 on this host runs
 * at about 1.6 GB/s against 25 GB/s for CRC-32 (storage/crc32.ts), and a download is CPU-bound: hashing it
 * would halve the download rate (bench/RESULTS.md). `fhir-binary-gateway scrub` checks the full
 * SHA-256. Encrypted blobs are authenticated by AES-GCM chunk by chunk and need no CRC on read.
 */

/** Chunk size: the file pump's buffer size, so a verified chunk is one read. */
export const CHUNK_BYTES = 256 * 1024;

/** CRC-32 of each CHUNK_BYTES chunk of a stream, as it passes (DigestStream feeds it). */
export class ChunkCrcs {
  private crc = 0;
  private filled = 0;
  private readonly done: number[] = [];

  update(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) {
      const n = Math.min(CHUNK_BYTES - this.filled, buf.length - off);
      this.crc = crc32(buf.subarray(off, off + n), this.crc);
      this.filled += n;
      off += n;
      if (this.filled === CHUNK_BYTES) this.close();
    }
  }

  digest(): ChunkDigests {
    if (this.filled > 0) this.close();
    const out = Buffer.alloc(this.done.length * 4);
    this.done.forEach((c, i) => out.writeUInt32BE(c, i * 4));
    return { size: CHUNK_BYTES, crc32: out.toString('base64') };
  }

  private close(): void {
    this.done.push(this.crc >>> 0);
    this.crc = 0;
    this.filled = 0;
  }
}

/** The recorded chunk CRCs of a blob, checked for shape (a record with a wrong list must not pass as verified). */
export function chunkTable(info: BlobInfo): Buffer | undefined {
  const c = info.chunks;
  if (!c) return undefined;
  const table = Buffer.from(c.crc32, 'base64');
  if (c.size !== CHUNK_BYTES || table.length !== Math.ceil(info.size / CHUNK_BYTES) * 4) {
    throw blobUnreadable(`blob ${info.id}: its chunk digests do not fit its size`);
  }
  return table;
}

/** The chunk-aligned span that holds `range`: what must be read to verify it. */
export function alignedSpan(size: number, range: ByteRange | undefined): { start: number; end: number } {
  const start = range?.start ?? 0;
  const end = range?.end ?? size - 1;
  return { start: start - (start % CHUNK_BYTES), end: Math.min(size - 1, end - (end % CHUNK_BYTES) + CHUNK_BYTES - 1) };
}

/** Whether chunk `index` of `buf` (the whole chunk) matches the table. */
export function chunkMatches(table: Buffer, index: number, buf: Buffer): boolean {
  return crc32(buf) >>> 0 === table.readUInt32BE(index * 4);
}

export function chunkMismatch(info: BlobInfo, index: number): Error {
  return blobUnreadable(`blob ${info.id}: chunk ${index} does not match its recorded digest`);
}

/**
 * Takes the chunk-aligned span (alignedSpan) of a blob, holds each chunk until it is complete and
 * matches, then passes on the part of it inside `range`. A chunk that does not match, or a span
 * that ends early or runs long, fails the stream before any byte of that chunk is passed.
 */
export class ChunkVerifier extends Transform {
  private pieces: Buffer[] = [];
  private held = 0;
  /** CRC-32 of the pieces held so far: computed as they come, so a chunk is never copied to be checked. */
  private crc = 0;
  private index: number;
  /** Offset in the blob of the chunk being collected. */
  private at: number;

  constructor(
    private readonly info: BlobInfo,
    private readonly table: Buffer,
    private readonly range: { start: number; end: number },
  ) {
    super();
    const span = alignedSpan(info.size, range);
    this.at = span.start;
    this.index = span.start / CHUNK_BYTES;
  }

  override _transform(buf: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let off = 0;
    while (off < buf.length) {
      const want = this.chunkLength() - this.held;
      if (want <= 0) {
        cb(blobUnreadable(`blob ${this.info.id}: the store returned more bytes than recorded`));
        return;
      }
      const piece = buf.subarray(off, off + want);
      this.pieces.push(piece);
      this.held += piece.length;
      this.crc = crc32(piece, this.crc);
      off += piece.length;
      if (this.held === this.chunkLength()) {
        const err = this.release();
        if (err) {
          cb(err);
          return;
        }
      }
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    const span = alignedSpan(this.info.size, this.range);
    cb(this.at <= span.end ? blobUnreadable(`blob ${this.info.id}: the store returned fewer bytes than recorded`) : null);
  }

  private chunkLength(): number {
    return Math.min(CHUNK_BYTES, this.info.size - this.at);
  }

  private release(): Error | undefined {
    const { pieces, held } = this;
    const crc = this.crc >>> 0;
    this.pieces = [];
    this.held = 0;
    this.crc = 0;
    if (crc !== this.table.readUInt32BE(this.index * 4)) return chunkMismatch(this.info, this.index);
    // The part of the chunk inside the range, piece by piece (offsets relative to the chunk).
    const from = Math.max(this.range.start - this.at, 0);
    const to = Math.min(this.range.end - this.at + 1, held);
    let at = 0;
    for (const piece of pieces) {
      const a = Math.max(from - at, 0);
      const b = Math.min(to - at, piece.length);
      if (a < b) this.push(a === 0 && b === piece.length ? piece : piece.subarray(a, b));
      at += piece.length;
    }
    this.at += held;
    this.index++;
    return undefined;
  }
}

/**
 * A blob recorded before chunk digests existed: its whole SHA-256 is checked as it streams, and
 * the last piece is held back until it matches, so a mismatching blob is never served whole.
 */
export class WholeVerifier extends Transform {
  private readonly hash = createHash('sha256');
  private last: Buffer | undefined;

  constructor(private readonly info: BlobInfo) {
    super();
  }

  override _transform(buf: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(buf);
    const prev = this.last;
    this.last = buf;
    cb(null, prev);
  }

  override _flush(cb: TransformCallback): void {
    if (this.hash.digest('hex') !== this.info.sha256) {
      cb(blobUnreadable(`blob ${this.info.id}: its content does not match its recorded SHA-256`));
      return;
    }
    cb(null, this.last);
  }
}

/**
 * What every driver's get() serves: the blob's bytes (or `range` of them), verified on the way.
 * `fetch` reads an inclusive span of the stored content. A blob without chunk digests is checked
 * whole; a Range of one is read twice (whole to check, then the range): such blobs predate this
 * version, and `scrub --upgrade` records their digests.
 */
export async function verifiedRead(
  info: BlobInfo,
  range: ByteRange | undefined,
  fetch: (start: number, end: number) => Promise<Readable>,
): Promise<Readable> {
  if (info.size === 0) return Readable.from([]);
  const want = { start: range?.start ?? 0, end: range?.end ?? info.size - 1 };
  const table = chunkTable(info);
  if (table) {
    const span = alignedSpan(info.size, want);
    return through(await fetch(span.start, span.end), new ChunkVerifier(info, table, want));
  }
  const whole = want.start === 0 && want.end === info.size - 1;
  if (whole) return through(await fetch(0, info.size - 1), new WholeVerifier(info));
  const check = through(await fetch(0, info.size - 1), new WholeVerifier(info));
  // Read to the end (nothing is kept): a mismatch rejects here, before the range is served.
  for await (const _ of check) void _;
  return fetch(want.start, want.end);
}

/** `source` piped into `t`, its failure failing `t`, and `t` destroyed early destroying `source`. */
function through(source: Readable, t: Transform): Readable {
  source.on('error', (err) => t.destroy(err));
  t.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  return source.pipe(t);
}

/**
 * Resolves once `body` has its first bytes (a verifying read has checked their chunk), rejects
 * with the failure if it fails before: a caller can still refuse cleanly rather than cut a
 * response it has begun.
 */
export function firstBytes(body: Readable): Promise<Readable> {
  // Empty content, already at its end: nothing to wait for (no 'readable' would come).
  if (body.readableEnded || body.readableLength > 0) return Promise.resolve(body);
  return new Promise((resolve, reject) => {
    const ready = () => {
      body.off('error', failed);
      body.off('readable', ready);
      body.off('end', ready);
      resolve(body);
    };
    const failed = (err: Error) => {
      body.off('readable', ready);
      body.off('end', ready);
      reject(err);
    };
    body.on('readable', ready);
    body.once('end', ready);
    body.once('error', failed);
  });
}

/**
 * If `err` says stored content cannot be served as recorded (BLOB_UNREADABLE: a digest or an
 * authentication tag failed, bytes are missing): why, and the blob id when the failure names it.
 * For the log, at error: the store holds wrong bytes. Never content.
 */
export function integrityFailure(err: unknown): { readonly blob: string | undefined; readonly cause: string } | undefined {
  if ((err as { code?: unknown } | undefined)?.code !== 'BLOB_UNREADABLE') return undefined;
  const cause = (err as { cause?: unknown }).cause;
  const text = cause instanceof Error ? cause.message : 'unreadable';
  const m = /^blob ([a-z0-9-]{1,64}): (.*)$/.exec(text);
  return m ? { blob: m[1], cause: m[2] } : { blob: undefined, cause: text };
}
