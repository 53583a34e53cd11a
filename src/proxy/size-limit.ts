import { Transform, type TransformCallback } from 'node:stream';
import { GatewayError } from '../errors.js';

/** Counts body bytes as they stream past and fails the stream the moment the count passes the limit. */
export class SizeLimit extends Transform {
  private seen = 0;
  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      cb(new GatewayError('PAYLOAD_TOO_LARGE', `limit is ${this.limit} bytes`));
      return;
    }
    cb(null, chunk);
  }

  get bytes(): number {
    return this.seen;
  }
}
