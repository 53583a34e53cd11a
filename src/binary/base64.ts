import { Transform, type TransformCallback } from 'node:stream';

/** Base64-encodes a byte stream on the fly, carrying the 0–2 bytes that do not fill a group to the next chunk. */
export class Base64Encode extends Transform {
  private carry: Buffer = Buffer.alloc(0);

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const all = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const whole = all.length - (all.length % 3);
    this.carry = Buffer.from(all.subarray(whole));
    cb(null, whole ? all.subarray(0, whole).toString('base64') : undefined);
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.carry.length ? this.carry.toString('base64') : undefined);
  }
}

export function base64Length(bytes: number): number {
  return 4 * Math.ceil(bytes / 3);
}
