/** Where audit lines go: a stream that says when it is full (write → false) and when it drained. */
export interface LineSink {
  /** False: full, wait for 'drain' (a destination that returns nothing never is). */
  write(line: string): boolean | void;
  once?(event: 'drain', listener: () => void): unknown;
}

/**
 * A bounded queue in front of a destination that may be slow (a full disk, a blocked stdout pipe):
 * lines wait while the destination is full; past `max` waiting lines, new ones are dropped and
 * counted, never held without bound and never waited for by a request. A destination that failed
 * for good (`fail()`) takes nothing more: every line is counted as dropped.
 */
export class LineQueue {
  private readonly waiting: string[] = [];
  private blocked = false;
  private failed = false;
  private idle: (() => void)[] = [];
  written = 0;
  dropped = 0;

  constructor(
    private readonly sink: LineSink,
    private readonly max: number,
  ) {}

  push(line: string): void {
    if (this.failed) {
      this.dropped++;
      return;
    }
    if (this.blocked) {
      if (this.waiting.length >= this.max) this.dropped++;
      else this.waiting.push(line);
      return;
    }
    this.send(line);
  }

  /** Lines not yet handed to the destination. */
  get pending(): number {
    return this.waiting.length;
  }

  /** The destination failed: what waits, and all that comes, is dropped. */
  fail(): void {
    if (this.failed) return;
    this.failed = true;
    this.dropped += this.waiting.splice(0).length;
    this.settle();
  }

  /** Resolves once nothing waits (or after `ms`, counting what still waits as dropped). */
  async drained(ms: number): Promise<void> {
    if (this.waiting.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idle.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
    this.dropped += this.waiting.splice(0).length;
  }

  private send(line: string): void {
    this.written++;
    if (this.sink.write(line) !== false || !this.sink.once) return;
    this.blocked = true;
    this.sink.once('drain', () => this.drain());
  }

  private drain(): void {
    this.blocked = false;
    while (!this.blocked && !this.failed && this.waiting.length > 0) this.send(this.waiting.shift()!);
    if (this.waiting.length === 0) this.settle();
  }

  private settle(): void {
    for (const resolve of this.idle.splice(0)) resolve();
  }
}
