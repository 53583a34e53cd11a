import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SizeLimit } from './size-limit.js';

export interface SpoolOptions {
  /** The private directory spool files go to. */
  readonly dir: string;
  /** Names the file (`fbg-KIND-uuid.json`), so an operator can tell what a leftover was. */
  readonly kind: string;
  readonly maxBytes: number;
  /** Aborts the spool (the client went away): the promise then resolves undefined. */
  readonly signal: AbortSignal;
}

export interface SpoolFile {
  readonly file: string;
  readonly size: number;
}

/**
 * Reads a body through `check` (which passes it on, rewritten or not, or fails) into a private
 * spool file: whoever reads the file gets nothing until all of it passed, then a body of known
 * length. Undefined when aborted; a refusal rejects with the file already removed.
 */
export async function spoolThrough(
  body: Readable,
  check: Transform | readonly Transform[],
  opts: SpoolOptions,
): Promise<SpoolFile | undefined> {
  const file = join(opts.dir, `fbg-${opts.kind}-${randomUUID()}.json`);
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  try {
    const checks = Array.isArray(check) ? check : [check as Transform];
    await pipeline([body, new SizeLimit(opts.maxBytes), ...checks, out], { signal: opts.signal });
    return { file, size: out.bytesWritten };
  } catch (err) {
    await unlink(file).catch(() => undefined);
    if (opts.signal.aborted) return undefined;
    throw err;
  }
}

/** A signal that aborts when `res` closes before its answer was complete (the client went away). */
export function clientGone(res: {
  writableFinished: boolean;
  once(e: 'close', f: () => void): unknown;
  off(e: 'close', f: () => void): unknown;
}): {
  readonly signal: AbortSignal;
  release(): void;
} {
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.once('close', onClose);
  return { signal: abort.signal, release: () => res.off('close', onClose) };
}
