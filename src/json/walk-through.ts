import { Transform, type TransformCallback } from 'node:stream';

/** The part of a walk a pass-through stream drives. */
export interface Walk {
  push(chunk: Buffer): Promise<void> | undefined;
  end(): Promise<void> | undefined;
}

/**
 * A stream the bytes go through unchanged while a walk reads them: for readers (checks, scans),
 * not rewriters. Their policies never wait, so each chunk is read before it is passed on and a
 * refusal fails the stream before a byte past it moves. `tolerant`: a document the walk cannot
 * read is passed on all the same, and `onBroken` says the reading stopped.
 */
export class WalkThrough extends Transform {
  private broken = false;

  constructor(
    private readonly walk: Walk,
    private readonly opts: { readonly tolerant?: boolean; onBroken?(): void } = {},
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const err = this.walkStep(() => this.walk.push(chunk));
    if (err) cb(err);
    else cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    cb(this.walkStep(() => this.walk.end()) ?? null);
  }

  private walkStep(step: () => Promise<void> | undefined): Error | undefined {
    if (this.broken) return undefined;
    try {
      if (step()) throw new Error('a walk that reads a stream as it passes must not wait');
      return undefined;
    } catch (err) {
      if (!this.opts.tolerant) return err as Error;
      this.broken = true;
      this.opts.onBroken?.();
      return undefined;
    }
  }
}
