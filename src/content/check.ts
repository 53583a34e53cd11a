import { Transform, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import { GatewayError } from '../errors/catalogue.js';
import { isTextual } from './media-type.js';
import { SNIFF_BYTES, verdict } from './sniff.js';

/**
 * Holds back the first bytes of an upload until their real type is known, then lets everything
 * through, failing the stream with UNSUPPORTED_MEDIA when the content is not what was declared.
 * Formats with a signature must show it; text (which has none) must be valid UTF-8 without NUL,
 * checked to the last byte. Anything else cannot be verified and is refused: fail closed.
 */
export class ContentCheck extends Transform {
  private head: Buffer[] = [];
  private headBytes = 0;
  private decided = false;
  private readonly utf8: TextDecoder | undefined;

  /** `declared`: the media type essence the client sent (already checked against the allow-list). */
  constructor(private readonly declared: string) {
    super();
    // Declared octet-stream says "unknown bytes": there is nothing to compare with; the
    // allow-list decides whether that is acceptable at all.
    this.utf8 = isTextual(declared) ? new TextDecoder('utf-8', { fatal: true }) : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const bad = this.checkText(chunk, false);
    if (bad) {
      cb(bad);
      return;
    }
    if (this.decided) {
      cb(null, chunk);
      return;
    }
    this.head.push(chunk);
    this.headBytes += chunk.length;
    if (this.headBytes < SNIFF_BYTES) {
      cb();
      return;
    }
    this.decide(cb);
  }

  override _flush(cb: TransformCallback): void {
    const bad = this.checkText(Buffer.alloc(0), true);
    if (bad) {
      cb(bad);
      return;
    }
    if (this.decided) {
      cb();
      return;
    }
    this.decide(cb);
  }

  private decide(cb: TransformCallback): void {
    const head = Buffer.concat(this.head, this.headBytes);
    this.head = [];
    this.decided = true;
    verdict(head, this.declared).then(
      (err) => (err ? cb(err) : cb(null, head)),
      (err: unknown) => cb(err as Error),
    );
  }

  private checkText(chunk: Buffer, last: boolean): GatewayError | undefined {
    if (!this.utf8) return undefined;
    if (chunk.includes(0)) return new GatewayError('UNSUPPORTED_MEDIA', `${this.declared} content contains NUL bytes`);
    try {
      this.utf8.decode(chunk, { stream: !last });
    } catch {
      return new GatewayError('UNSUPPORTED_MEDIA', `${this.declared} content is not valid UTF-8`);
    }
    return undefined;
  }
}
