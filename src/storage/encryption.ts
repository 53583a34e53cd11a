import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { blobUnreadable } from './blob-store.js';

/**
 * Encryption at rest: AES-256-GCM, envelope style. Each blob gets its own random data key,
 * wrapped by a configured key-encryption key (identified by `keyId`, kept in the blob's header so
 * old blobs still open after rotation). The content is sealed in fixed-size chunks, each with its
 * own tag, so a Range read decrypts only the chunks it touches and never emits a byte that was not
 * authenticated. Chunk nonces are a per-blob random prefix plus the chunk index; the associated
 * data binds each chunk to the header, its position and whether it is the last, so chunks cannot
 * be swapped, reordered, dropped or the file truncated without the read failing.
 *
 * Layout: MAGIC(4) VERSION(1) keyIdLen(1) keyId wrapIv(12) wrappedKey(32) wrapTag(16)
 *         chunkSize(u32 BE) noncePrefix(8) ‖ chunk₀ ‖ chunk₁ … where chunkᵢ = ciphertext ‖ tag(16).
 * A blob of n bytes has max(1, ⌈n / chunkSize⌉) chunks (an empty blob has one empty chunk).
 */
const MAGIC = Buffer.from('FBGE');
const VERSION = 1;
const TAG = 16;
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** The fixed part of the header before the key id. */
const PREFIX = MAGIC.length + 2;
const AFTER_KEY_ID = 12 + 32 + TAG + 4 + 8;

export interface KeyRing {
  /** The key new blobs are sealed with. */
  readonly activeKeyId: string;
  /** Every key that may still be needed to open old blobs, by id; each 32 bytes. */
  readonly keys: ReadonlyMap<string, Buffer>;
}

export interface SealedHeader {
  readonly keyId: string;
  readonly chunkSize: number;
  /** Header length in bytes: where chunk 0 starts. */
  readonly length: number;
  readonly dataKey: Buffer;
  readonly noncePrefix: Buffer;
  /** SHA-256 of the header bytes, part of every chunk's associated data. */
  readonly digest: Buffer;
}

export function checkKeyRing(ring: KeyRing): void {
  if (!ring.keys.has(ring.activeKeyId)) throw new Error(`encryption: active key "${ring.activeKeyId}" is not among the configured keys`);
  for (const [id, key] of ring.keys) {
    if (key.length !== 32) throw new Error(`encryption: key "${id}" must be 32 bytes (AES-256), got ${key.length}`);
    if (Buffer.byteLength(id) > 255 || !id) throw new Error('encryption: key ids must be 1-255 bytes');
  }
}

function wrapAad(keyId: Buffer): Buffer {
  return Buffer.concat([MAGIC, Buffer.from([VERSION]), keyId]);
}

function chunkAad(header: SealedHeader | { digest: Buffer }, index: number, last: boolean): Buffer {
  const aad = Buffer.alloc(32 + 5);
  header.digest.copy(aad, 0);
  aad.writeUInt32BE(index, 32);
  aad[36] = last ? 1 : 0;
  return aad;
}

function nonce(prefix: Buffer, index: number): Buffer {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(index, 8);
  return n;
}

/** A new header for one blob, sealed with the ring's active key. */
export function newHeader(ring: KeyRing, chunkSize = DEFAULT_CHUNK_BYTES): { bytes: Buffer; header: SealedHeader } {
  const keyId = Buffer.from(ring.activeKeyId, 'utf8');
  const kek = ring.keys.get(ring.activeKeyId)!;
  const dataKey = randomBytes(32);
  const wrapIv = randomBytes(12);
  const wrap = createCipheriv('aes-256-gcm', kek, wrapIv).setAAD(wrapAad(keyId));
  const wrapped = Buffer.concat([wrap.update(dataKey), wrap.final()]);
  const noncePrefix = randomBytes(8);
  const size = Buffer.alloc(4);
  size.writeUInt32BE(chunkSize);
  const bytes = Buffer.concat([MAGIC, Buffer.from([VERSION, keyId.length]), keyId, wrapIv, wrapped, wrap.getAuthTag(), size, noncePrefix]);
  const digest = createHash('sha256').update(bytes).digest();
  return { bytes, header: { keyId: ring.activeKeyId, chunkSize, length: bytes.length, dataKey, noncePrefix, digest } };
}

/** How many header bytes to read before `openHeader` can tell the full length: the fixed prefix and a maximal key id. */
export const HEADER_READ_BYTES = PREFIX + 255 + AFTER_KEY_ID;

/**
 * Parses and unwraps a header. Fails with blobUnreadable, before a single content byte is read,
 * when the file is not ours, its key id is not configured, or the configured key is not the one
 * it was sealed with.
 */
export function openHeader(buf: Buffer, ring: KeyRing): SealedHeader {
  if (buf.length < PREFIX || !buf.subarray(0, MAGIC.length).equals(MAGIC) || buf[MAGIC.length] !== VERSION) {
    throw blobUnreadable('not an encrypted blob of a known version');
  }
  const idLen = buf[MAGIC.length + 1];
  const length = PREFIX + idLen + AFTER_KEY_ID;
  if (buf.length < length) throw blobUnreadable('encrypted blob header is truncated');
  const keyIdBytes = buf.subarray(PREFIX, PREFIX + idLen);
  const keyId = keyIdBytes.toString('utf8');
  const kek = ring.keys.get(keyId);
  if (!kek) throw blobUnreadable(`blob was encrypted with key "${keyId}", which is not configured`);
  let at = PREFIX + idLen;
  const wrapIv = buf.subarray(at, (at += 12));
  const wrapped = buf.subarray(at, (at += 32));
  const wrapTag = buf.subarray(at, (at += TAG));
  const chunkSize = buf.readUInt32BE(at);
  at += 4;
  const noncePrefix = Buffer.from(buf.subarray(at, at + 8));
  let dataKey: Buffer;
  try {
    const unwrap = createDecipheriv('aes-256-gcm', kek, wrapIv).setAAD(wrapAad(keyIdBytes)).setAuthTag(wrapTag);
    dataKey = Buffer.concat([unwrap.update(wrapped), unwrap.final()]);
  } catch {
    throw blobUnreadable(`key "${keyId}" does not open this blob (wrong key material)`);
  }
  if (chunkSize < 1) throw blobUnreadable('encrypted blob header has chunk size 0');
  const digest = createHash('sha256').update(buf.subarray(0, length)).digest();
  return { keyId, chunkSize, length, dataKey, noncePrefix, digest };
}

export function chunkCount(size: number, chunkSize: number): number {
  return size === 0 ? 1 : Math.ceil(size / chunkSize);
}

/** Bytes on disk for `size` content bytes: what a reader checks the file against. */
export function sealedSize(header: Pick<SealedHeader, 'length' | 'chunkSize'>, size: number): number {
  return header.length + size + chunkCount(size, header.chunkSize) * TAG;
}

/** Encrypts a stream chunk by chunk. Holds at most one chunk plus what arrived after it, because a chunk is sealed as "last" only once the input has ended. */
export class SealStream extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;

  constructor(private readonly header: SealedHeader) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const size = this.header.chunkSize;
    // Strictly more than a chunk: the held chunk is known not to be the last one.
    if (this.pendingBytes > size) {
      let all = Buffer.concat(this.pending, this.pendingBytes);
      while (all.length > size) {
        this.push(this.seal(all.subarray(0, size), false));
        all = all.subarray(size);
      }
      this.pending = [all];
      this.pendingBytes = all.length;
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    this.push(this.seal(Buffer.concat(this.pending, this.pendingBytes), true));
    this.pending = [];
    cb();
  }

  private seal(plain: Buffer, last: boolean): Buffer {
    const i = this.index++;
    const c = createCipheriv('aes-256-gcm', this.header.dataKey, nonce(this.header.noncePrefix, i)).setAAD(chunkAad(this.header, i, last));
    return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  }
}

/**
 * Decrypts the sealed chunks `first…` of a blob of `size` bytes, emitting only plaintext whose tag
 * verified, trimmed to the inclusive range [start, end]. Input must begin at chunk `first`.
 */
export class OpenStream extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private index: number;
  private readonly lastIndex: number;
  /** Plaintext offset of the next chunk to open. */
  private offset: number;
  private readonly size: number;

  constructor(
    private readonly header: SealedHeader,
    size: number,
    // Not `start`/`end`: a field named `end` would shadow Writable#end.
    private readonly first: number,
    private readonly last: number,
  ) {
    super();
    this.index = Math.floor(first / header.chunkSize);
    this.offset = this.index * header.chunkSize;
    this.lastIndex = chunkCount(size, header.chunkSize) - 1;
    this.size = size;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    try {
      while (this.offset <= this.last) {
        const plainLen = Math.min(this.header.chunkSize, this.size - this.offset);
        const sealedLen = plainLen + TAG;
        if (this.buf.length < sealedLen) break;
        this.emit_(this.buf.subarray(0, sealedLen), plainLen);
        this.buf = this.buf.subarray(sealedLen);
      }
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    // Empty blob: its single chunk is all tag.
    if (this.offset <= this.last || (this.size === 0 && this.index === 0)) {
      try {
        if (this.size === 0 && this.buf.length === TAG) this.emit_(this.buf, 0);
        else throw blobUnreadable('encrypted blob is truncated');
      } catch (err) {
        cb(err as Error);
        return;
      }
    }
    cb();
  }

  private emit_(sealed: Buffer, plainLen: number): void {
    const i = this.index;
    const d = createDecipheriv('aes-256-gcm', this.header.dataKey, nonce(this.header.noncePrefix, i))
      .setAAD(chunkAad(this.header, i, i === this.lastIndex))
      .setAuthTag(sealed.subarray(plainLen));
    let plain: Buffer;
    try {
      plain = Buffer.concat([d.update(sealed.subarray(0, plainLen)), d.final()]);
    } catch {
      throw blobUnreadable(`encrypted blob failed authentication at chunk ${i}`);
    }
    const from = Math.max(0, this.first - this.offset);
    const to = Math.min(plainLen, this.last - this.offset + 1);
    if (to > from) this.push(plain.subarray(from, to));
    this.index++;
    this.offset += plainLen;
  }
}

/** Where in the file the chunks covering plaintext [start, end] begin and end (inclusive byte offsets). */
export function sealedSpan(
  header: Pick<SealedHeader, 'length' | 'chunkSize'>,
  size: number,
  start: number,
  end: number,
): { from: number; to: number } {
  const c = header.chunkSize;
  const first = Math.floor(start / c);
  const last = size === 0 ? 0 : Math.floor(end / c);
  const from = header.length + first * (c + TAG);
  const lastPlain = Math.min(c, size - last * c);
  const to = header.length + last * (c + TAG) + lastPlain + TAG - 1;
  return { from, to };
}
