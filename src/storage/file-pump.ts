import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

const BUFFERS = 4;
const BUFFER_BYTES = 256 * 1024;

/**
 * Copies bytes `start`..`end` (inclusive) of an open file into `out` through a few reused
 * buffers: a buffer goes back to the pool only when `out` reports it written. A read stream
 * allocates a fresh buffer per chunk, and on a large download the garbage collection that causes
 * costs more than the copy (bench/RESULTS.md, "Binary transfer"). Stops quietly when `out` is
 * destroyed (the client left); rejects when the file is shorter than expected. Closes `file`.
 */
export async function pumpFile(file: FileHandle, start: number, end: number, out: Writable): Promise<void> {
  const free: Buffer[] = Array.from({ length: BUFFERS }, () => Buffer.allocUnsafe(BUFFER_BYTES));
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  out.on('close', poke);
  out.on('drain', poke);
  try {
    let pos = start;
    while (pos <= end) {
      while ((!free.length || out.writableNeedDrain) && !out.destroyed) await new Promise<void>((r) => (wake = r));
      if (out.destroyed) return;
      const buf = free.pop()!;
      const { bytesRead } = await file.read(buf, 0, Math.min(BUFFER_BYTES, end - pos + 1), pos);
      if (bytesRead === 0) throw new Error('the stored file is shorter than its recorded size');
      pos += bytesRead;
      out.write(buf.subarray(0, bytesRead), (err) => {
        if (!err) free.push(buf);
        poke();
      });
    }
  } finally {
    out.off('close', poke);
    out.off('drain', poke);
    await file.close();
  }
}
