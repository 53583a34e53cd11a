import { GatewayError } from '../errors/catalogue.js';
import type { JsonWriter } from '../json/writer.js';

/** A part of the output that may have to wait: for its owner's id, or for a blob to stream. */
export interface Slot {
  ready(): boolean;
  render(): AsyncIterable<string>;
  /** Releases what it holds when the output is abandoned. */
  discard(): Promise<void>;
}

/** What each waiting slot costs against the bound besides what it holds: waiting slots must not be free. */
const SLOT_COST = 512;

/**
 * The Inflater's output in order: text the walk wrote, and slots whose text is known only later.
 * Text behind a slot that is not ready waits, bounded by `maxPendingChars` (slots and what they
 * hold included), so a response whose resource ids come late cannot make the gateway hold it all.
 */
export class InflateOutput {
  private readonly queue: (string | { readonly slot: Slot; readonly cost: number })[] = [];
  private pendingChars = 0;
  /** After drop(): what the walk writes is thrown away until unmute(). */
  private muted = false;

  constructor(
    private readonly out: JsonWriter,
    private readonly maxPendingChars: number,
  ) {}

  /** Appends a slot after what the walk has written so far; `heldChars`: memory the slot holds. */
  enqueue(slot: Slot, heldChars = 0): void {
    if (this.muted) {
      this.out.take();
      void slot.discard();
      return;
    }
    const text = this.out.take();
    const cost = SLOT_COST + heldChars;
    this.queue.push(text, { slot, cost });
    this.pendingChars += text.length + cost;
    this.check();
  }

  /** Drops `slot` and everything queued after it, and mutes the walk's output (an entry the guard refused). */
  drop(slot: Slot): void {
    const at = this.queue.findIndex((q) => typeof q !== 'string' && q.slot === slot);
    for (const q of at < 0 ? [] : this.queue.splice(at)) {
      if (typeof q === 'string') this.pendingChars -= q.length;
      else {
        this.pendingChars -= q.cost;
        void q.slot.discard();
      }
    }
    this.out.take();
    this.muted = true;
  }

  /** The dropped part has ended: what was written since goes, then output flows again. */
  unmute(): void {
    this.out.take();
    this.muted = false;
  }

  /** Output waits only while a slot does: what waits is bounded. */
  check(): void {
    if (this.queue.length && this.pendingChars + (this.muted ? 0 : this.out.chars) > this.maxPendingChars) {
      throw new GatewayError('UPSTREAM_INVALID', "a resource's id comes too late in the response to serve its attachments");
    }
  }

  /** What can be sent now (everything, when `final`). */
  async *flush(final: boolean): AsyncGenerator<string> {
    while (this.queue.length) {
      const head = this.queue[0];
      if (typeof head === 'string') {
        this.queue.shift();
        this.pendingChars -= head.length;
        if (head) yield head;
        continue;
      }
      if (!final && !head.slot.ready()) return;
      this.queue.shift();
      this.pendingChars -= head.cost;
      yield* head.slot.render();
    }
    if (this.muted) this.out.take();
    else if (this.out.chars) yield this.out.take();
  }

  async discard(): Promise<void> {
    for (const s of this.queue.splice(0)) if (typeof s !== 'string') await s.slot.discard();
  }
}
