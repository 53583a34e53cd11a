import { Transform, type TransformCallback } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';

/** Counts body bytes as they stream past and fails the stream the moment the count passes the limit. */
export class SizeLimit extends Transform {
  private seen = 0;
  constructor(
    private readonly limit: number = Number.POSITIVE_INFINITY,
    /** The rule whose limit this is, named in the refusal. */
    private readonly rule?: string,
  ) {
    super();
  }

  /** Counts `chunk`; the error to fail the stream with once the limit is passed. */
  protected admit(chunk: Buffer): GatewayError | undefined {
    this.seen += chunk.length;
    if (this.seen <= this.limit) return undefined;
    const of = this.rule === undefined ? '' : ` (limits.maxRequestBytes of rule '${this.rule}')`;
    return new GatewayError('PAYLOAD_TOO_LARGE', `limit is ${this.limit} bytes${of}`);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    cb(this.admit(chunk) ?? null, chunk);
  }

  get bytes(): number {
    return this.seen;
  }
}
