import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { BlobInfo } from './blob-store.js';
import { blobUnreadable } from './blob-store.js';
import { CHUNK_BYTES, alignedSpan, chunkMatches, chunkMismatch, chunkTable } from './chunks.js';

const BUFFERS = 4;

/**
 * Copies bytes `start`..`end` (inclusive) of a blob's plain local file into a response through a
 * few reused buffers: a buffer goes back to the pool only when the response reports it written. A
 * read stream allocates a fresh buffer per chunk, and on a large download the garbage collection
 * that causes costs more than the copy (bench/RESULTS.md, "Binary transfer").
 *
 * Every buffer is one recorded chunk (storage/chunks.ts), read whole and checked against its
 * digest before any of it is written; open() checks the first one, so a blob corrupt at its start
 * is refused before the response's head goes out, and a later corrupt chunk fails to() before its
 * bytes: the answer is never completed. Closes the file however it ends.
 */
export class FilePump {
  private readonly table: Buffer;
  private readonly free: Buffer[] = Array.from({ length: BUFFERS }, () => Buffer.allocUnsafe(CHUNK_BYTES));
  /** The first chunk, read and checked by open(): [buffer, bytes]. */
  private first: [Buffer, number] | undefined;
  /** Offset in the file of the next chunk to read. */
  private pos: number;
  private readonly last: number;

  private constructor(
    private readonly file: FileHandle,
    private readonly info: BlobInfo,
    private readonly start: number,
    private readonly end: number,
  ) {
    const table = chunkTable(info);
    if (!table) throw blobUnreadable(`blob ${info.id}: no chunk digests to check its file against`);
    this.table = table;
    const span = alignedSpan(info.size, { start, end });
    this.pos = span.start;
    this.last = span.end;
  }

  /** Opens the pump on `file` and checks its first chunk; `file` is closed if that fails. */
  static async open(file: FileHandle, info: BlobInfo, start: number, end: number): Promise<FilePump> {
    try {
      const pump = new FilePump(file, info, start, end);
      const buf = pump.free.pop()!;
      pump.first = [buf, await pump.readChunk(buf)];
      return pump;
    } catch (err) {
      await file.close();
      throw err;
    }
  }

  /** Closes the file without sending anything (the response was refused meanwhile). */
  async discard(): Promise<void> {
    await this.file.close();
  }

  /** Sends the range into `out`. Stops quietly when `out` is destroyed (the client left); rejects on a read or digest failure. */
  async to(out: Writable): Promise<void> {
    let wake: (() => void) | undefined;
    const poke = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    out.on('close', poke);
    out.on('drain', poke);
    try {
      let chunk = this.first;
      this.first = undefined;
      for (;;) {
        if (chunk) {
          const [buf, n] = chunk;
          const at = this.pos - n;
          const from = Math.max(this.start - at, 0);
          const to = Math.min(this.end - at + 1, n);
          out.write(buf.subarray(from, to), (err) => {
            if (!err) this.free.push(buf);
            poke();
          });
        }
        if (this.pos > this.last) return;
        while ((!this.free.length || out.writableNeedDrain) && !out.destroyed) await new Promise<void>((r) => (wake = r));
        if (out.destroyed) return;
        const buf = this.free.pop()!;
        chunk = [buf, await this.readChunk(buf)];
      }
    } finally {
      out.off('close', poke);
      out.off('drain', poke);
      await this.file.close();
    }
  }

  /** Reads the chunk at `pos` whole into `buf` and checks it; advances `pos`. */
  private async readChunk(buf: Buffer): Promise<number> {
    const want = Math.min(CHUNK_BYTES, this.info.size - this.pos);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.file.read(buf, got, want - got, this.pos + got);
      if (bytesRead === 0) throw blobUnreadable(`blob ${this.info.id}: the stored file is shorter than its recorded size`);
      got += bytesRead;
    }
    const index = this.pos / CHUNK_BYTES;
    if (!chunkMatches(this.table, index, buf.subarray(0, want))) throw chunkMismatch(this.info, index);
    this.pos += want;
    return want;
  }
}
