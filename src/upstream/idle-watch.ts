/**
 * Where an item stands. The watch keeps its bookkeeping on the item itself (progress, clock and
 * the links of an intrusive list), so watching one costs no allocation and no hashing.
 */
export interface IdleMark {
  /** The progress last seen (bytes moved). */
  idleProgress: number;
  /** When that progress was first seen, in the watch's clock; -1 when the item is not being timed. */
  idleSince: number;
  idlePrev: IdleMark | undefined;
  idleNext: IdleMark | undefined;
}

export interface IdleWatchOptions<T> {
  readonly timeoutMs: number;
  /** Bytes moved so far; any change means "not idle". Undefined: not subject to the timeout right now. Null: over, stop watching it. */
  readonly progressOf: (item: T) => number | undefined | null;
  /** Called once when an item made no progress for timeoutMs; the item is no longer watched. */
  readonly onIdle: (item: T) => void;
  readonly now?: () => number;
}

/**
 * A coarse idle timeout over many in-flight items, by sweeping: every quarter of the timeout (at
 * least 10 ms, at most 1 s) each item's progress is compared with what the last sweep saw.
 *
 * Why not a timer per item (socket.setTimeout): that arms and disarms a timer, adds and removes
 * listeners, and refreshes the timer on every read and write, for every proxied request, to catch
 * the rare one that stalls. Here a request costs linking and unlinking one list node. It never
 * fires early: an item is timed out between timeoutMs and timeoutMs plus one sweep after its
 * last progress.
 */
export class IdleWatch<T extends IdleMark> {
  /** Sentinel of the circular list of watched items. */
  private readonly head: IdleMark = { idleProgress: 0, idleSince: -1, idlePrev: undefined, idleNext: undefined };
  private count = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(private readonly opts: IdleWatchOptions<T>) {
    this.head.idlePrev = this.head;
    this.head.idleNext = this.head;
    this.now = opts.now ?? (() => performance.now());
    const period = Math.max(10, Math.min(1_000, Math.floor(opts.timeoutMs / 4)));
    this.timer = setInterval(() => this.sweep(), period);
    this.timer.unref();
  }

  add(item: T): void {
    if (item.idleNext !== undefined) return;
    item.idleSince = -1;
    const last = this.head.idlePrev!;
    item.idlePrev = last;
    item.idleNext = this.head;
    last.idleNext = item;
    this.head.idlePrev = item;
    this.count++;
  }

  /** Stops watching an item; a no-op when it is not watched. */
  delete(item: T): void {
    const prev = item.idlePrev;
    const next = item.idleNext;
    if (prev === undefined || next === undefined) return;
    prev.idleNext = next;
    next.idlePrev = prev;
    item.idlePrev = undefined;
    item.idleNext = undefined;
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  /** One pass (the interval calls it; tests call it with their own clock). */
  sweep(): void {
    const now = this.now();
    // Timed-out items are collected first and failed after the walk: failing one exchange can end
    // others (and so unlink them) while the list is being walked.
    let idle: T[] | undefined;
    let ended: T[] | undefined;
    for (let node = this.head.idleNext!; node !== this.head; node = node.idleNext!) {
      const item = node as T;
      const progress = this.opts.progressOf(item);
      if (progress === null) {
        (ended ??= []).push(item);
      } else if (progress === undefined) {
        item.idleSince = -1;
      } else if (item.idleSince < 0 || progress !== item.idleProgress) {
        item.idleProgress = progress;
        item.idleSince = now;
      } else if (now - item.idleSince >= this.opts.timeoutMs) {
        (idle ??= []).push(item);
      }
    }
    if (ended) for (const item of ended) this.delete(item);
    if (!idle) return;
    for (const item of idle) {
      // Still watched: an earlier onIdle of this sweep may have ended it.
      if (item.idleNext === undefined) continue;
      this.delete(item);
      this.opts.onIdle(item);
    }
  }

  close(): void {
    clearInterval(this.timer);
    while (this.head.idleNext !== this.head) this.delete(this.head.idleNext as T);
  }
}
