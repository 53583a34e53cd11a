import { TextDecoder } from 'node:util';
import { fileTypeFromBuffer } from 'file-type';
import { GatewayError } from '../errors/catalogue.js';
import { isTextual, sameType } from './media-type.js';

/** What file-type needs to recognise every format it knows (its documented sample size). */
export const SNIFF_BYTES = 4100;

/**
 * The verdict on content whose first bytes are `head`: formats with a signature must show the
 * declared one; text (which has none) passes here and is checked byte by byte elsewhere; anything
 * else cannot be verified and is refused (fail closed). Declared octet-stream says "unknown
 * bytes": there is nothing to compare with, and the allow-list decides whether that is acceptable.
 */
export async function verdict(head: Buffer, declared: string): Promise<GatewayError | undefined> {
  if (declared === 'application/octet-stream') return undefined;
  const found = await fileTypeFromBuffer(head);
  if (found) {
    return sameType(found.mime, declared)
      ? undefined
      : new GatewayError('UNSUPPORTED_MEDIA', `content is ${found.mime}, declared as ${declared}`);
  }
  return isTextual(declared) ? undefined : new GatewayError('UNSUPPORTED_MEDIA', `content does not look like ${declared}`);
}

/**
 * Watches content go by when its declared type is not known yet (an Attachment's `contentType`
 * may come after its `data` in the JSON): keeps the first bytes for the sniff and whether the
 * whole is valid UTF-8 without NUL, and judges once the declared type is known.
 */
export class Sniffer {
  private head: Buffer[] = [];
  private headBytes = 0;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  private text = true;

  observe(chunk: Buffer): void {
    if (this.headBytes < SNIFF_BYTES) {
      const part = chunk.subarray(0, SNIFF_BYTES - this.headBytes);
      // A copy: the caller may reuse its buffer.
      this.head.push(Buffer.from(part));
      this.headBytes += part.length;
    }
    if (!this.text) return;
    if (chunk.includes(0)) {
      this.text = false;
      return;
    }
    try {
      this.utf8.decode(chunk, { stream: true });
    } catch {
      this.text = false;
    }
  }

  async judge(declared: string): Promise<GatewayError | undefined> {
    if (isTextual(declared)) {
      let whole = this.text;
      try {
        if (whole) this.utf8.decode();
      } catch {
        whole = false;
      }
      if (!whole) return new GatewayError('UNSUPPORTED_MEDIA', `${declared} content is not valid UTF-8 without NUL bytes`);
    }
    return verdict(Buffer.concat(this.head, this.headBytes), declared);
  }
}
