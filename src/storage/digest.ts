import { createHash, type Hash } from 'node:crypto';
import type { TransformCallback } from 'node:stream';
import { SizeLimit } from '../lib/size-limit.js';
import type { ChunkDigests } from './blob-store.js';
import { ChunkCrcs } from './chunks.js';

export interface Digest {
  readonly size: number;
  readonly sha256: string;
  readonly sha1: string;
  readonly chunks: ChunkDigests;
}

/**
 * Counts and hashes bytes as they pass (SHA-256 for integrity, SHA-1 because FHIR R4
 * Attachment.hash is SHA-1, a CRC-32 per chunk for verifying every read: storage/chunks.ts), failing the stream the moment `maxBytes` is passed. Every storage
 * driver puts its input through one of these, so size and hashes mean the same everywhere.
 */
export class DigestStream extends SizeLimit {
  private readonly sha256: Hash = createHash('sha256');
  private readonly sha1: Hash = createHash('sha1');
  private readonly crcs = new ChunkCrcs();
  private result: Digest | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const tooLarge = this.admit(chunk);
    if (tooLarge) {
      cb(tooLarge);
      return;
    }
    this.sha256.update(chunk);
    this.sha1.update(chunk);
    this.crcs.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.result = { size: this.bytes, sha256: this.sha256.digest('hex'), sha1: this.sha1.digest('base64'), chunks: this.crcs.digest() };
    cb();
  }

  /** Available once the stream has flushed (all input seen). */
  get digest(): Digest {
    if (!this.result) throw new Error('digest read before the stream ended');
    return this.result;
  }
}
