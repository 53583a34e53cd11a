import { Transform, type TransformCallback } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';

/**
 * Base64 both ways, as streams: content goes into the store decoded from attachment `data`, and
 * comes back out encoded into it, never whole in memory.
 */

/** Characters of base64 for `bytes` bytes, padded. */
export function base64Length(bytes: number): number {
  return 4 * Math.ceil(bytes / 3);
}

/**
 * Decoded bytes of a base64 text of `chars` characters ending in `tail` (its last two
 * characters, for the padding); an upper bound when the text holds whitespace.
 */
export function decodedSize(chars: number, tail: string): number {
  const pad = tail.endsWith('==') ? 2 : tail.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((chars * 3) / 4) - pad);
}

/** The 0–2 bytes that do not fill a group wait for the next chunk. */
function encodeWhole(carry: Buffer, chunk: Buffer): { readonly text: string; readonly carry: Buffer } {
  const all = carry.length ? Buffer.concat([carry, chunk]) : chunk;
  const whole = all.length - (all.length % 3);
  return { text: whole ? all.subarray(0, whole).toString('base64') : '', carry: Buffer.from(all.subarray(whole)) };
}

/** Base64-encodes a byte stream on the fly. */
export class Base64Encode extends Transform {
  private carry: Buffer = Buffer.alloc(0);

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const r = encodeWhole(this.carry, chunk);
    this.carry = r.carry;
    cb(null, r.text || undefined);
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.carry.length ? this.carry.toString('base64') : undefined);
  }
}

/**
 * Base64 of stored content of a recorded `size`, piece by piece; fails (BLOB_UNREADABLE) when the
 * content is longer or shorter than recorded. By then the answer's head is out: a short blob can
 * only cut the response, never complete it wrongly.
 */
export async function* base64Chunks(body: AsyncIterable<Buffer>, size: number): AsyncGenerator<string> {
  let carry: Buffer = Buffer.alloc(0);
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > size) throw new GatewayError('BLOB_UNREADABLE', 'the stored content is longer than recorded');
    const r = encodeWhole(carry, chunk);
    carry = r.carry;
    if (r.text) yield r.text;
  }
  if (carry.length) yield carry.toString('base64');
  if (n !== size) throw new GatewayError('BLOB_UNREADABLE', 'the stored content ended early');
}

const WHITESPACE = /[ \t\r\n]/g;
const NOT_BASE64 = /[^A-Za-z0-9+/=]/;
const EMPTY = Buffer.alloc(0);

/**
 * Decodes base64 text that arrives in pieces of any length. Node's decoder skips characters it
 * does not know; this one refuses them, so the bytes stored are exactly the bytes meant. FHIR's
 * base64Binary allows whitespace, which is dropped; `=` may only pad the final group.
 */
export class Base64Decoder {
  private carry = '';
  private padded = false;

  /** Decodes what whole 4-character groups `text` completes; the rest waits for the next piece. */
  push(text: string): Buffer {
    const clean =
      text.includes(' ') || text.includes('\n') || text.includes('\r') || text.includes('\t') ? text.replace(WHITESPACE, '') : text;
    if (this.padded && clean.length > 0) throw invalid('data after the final padded group');
    let s = this.carry + clean;
    if (NOT_BASE64.test(s)) throw invalid('a character outside the base64 alphabet');
    const pad = s.indexOf('=');
    if (pad !== -1) {
      // Padding ends the value: only more padding may follow, within the last group.
      if (!/^=+$/.test(s.slice(pad)) || s.length - pad > 2 || pad % 4 < 2) throw invalid('misplaced padding');
      if (s.length % 4 === 0) this.padded = true;
    }
    const whole = s.length - (s.length % 4);
    this.carry = s.slice(whole);
    s = s.slice(0, whole);
    return s.length ? Buffer.from(s, 'base64') : EMPTY;
  }

  /** The value is complete: a trailing partial group is an error, not something to guess at. */
  end(): void {
    if (this.carry.length) throw invalid('a truncated final group');
  }
}

function invalid(what: string): GatewayError {
  return new GatewayError('BAD_REQUEST', `attachment data is not valid base64: ${what}`);
}
