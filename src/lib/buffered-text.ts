import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/** Past this many characters the text moves from memory to a private file. */
const IN_MEMORY = 256 * 1024;

/**
 * A string value kept whole until its end is known (an inline attachment's base64, whose size
 * decides whether it may be sent at all): small ones in memory, larger ones in a private file.
 * Characters are written already JSON-escaped, ready to be sent between quotes.
 */
export class BufferedText {
  private chunks: string[] = [];
  private file: { readonly path: string; readonly handle: FileHandle } | undefined;
  chars = 0;

  /** Characters held in memory (none once they moved to the file). */
  get memoryChars(): number {
    return this.file ? 0 : this.chars;
  }

  constructor(private readonly dir: string) {}

  async write(s: string): Promise<void> {
    this.chars += s.length;
    if (this.file) {
      await this.file.handle.write(s);
      return;
    }
    this.chunks.push(s);
    if (this.chars <= IN_MEMORY) return;
    const path = join(this.dir, `fbg-inline-${randomUUID()}`);
    const handle = await open(path, 'wx', 0o600);
    this.file = { path, handle };
    const held = this.chunks.join('');
    this.chunks = [];
    await handle.write(held);
  }

  /** The characters written, once; the file goes when they have been read (or reading stopped). */
  async *read(): AsyncGenerator<string> {
    if (!this.file) {
      if (this.chunks.length) yield this.chunks.join('');
      this.chunks = [];
      return;
    }
    const { path, handle } = this.file;
    this.file = undefined;
    try {
      await handle.close();
      for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 64 * 1024 })) yield chunk as string;
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  async discard(): Promise<void> {
    this.chunks = [];
    const f = this.file;
    this.file = undefined;
    if (!f) return;
    await f.handle.close().catch(() => undefined);
    await unlink(f.path).catch(() => undefined);
  }
}
