/** Where audit lines go: a stream that says when it is full (write → false) and when it drained. */
export interface LineSink {
  /** False: full, wait for 'drain' (a destination that returns nothing never is). */
  write(line: string): boolean | void;
  once?(event: 'drain', listener: () => void): unknown;
}

/**
 * A bounded queue in front of a destination that may be slow (a full disk, a blocked stdout pipe):
 * lines wait while the destination is full; past `max` waiting lines, new ones are dropped and
 * counted, never held without bound and never waited for by a request.
 */
export class LineQueue {
  private readonly waiting: string[] = [];
  private blocked = false;
  written = 0;
  dropped = 0;

  constructor(
    private readonly sink: LineSink,
    private readonly max: number,
  ) {}

  push(line: string): void {
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

  private send(line: string): void {
    this.written++;
    if (this.sink.write(line) !== false || !this.sink.once) return;
    this.blocked = true;
    this.sink.once('drain', () => this.drain());
  }

  private drain(): void {
    this.blocked = false;
    while (!this.blocked && this.waiting.length > 0) this.send(this.waiting.shift()!);
  }
}
