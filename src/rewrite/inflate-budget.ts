import type { BlobRef } from '../fhir/blob-reference.js';
import type { Container } from '../json/walker.js';
import { escapeJsonText, type JsonWriter } from '../json/writer.js';
import { decodedSize } from '../lib/base64.js';
import { BufferedText } from '../lib/buffered-text.js';
import { servable, type BlobInfo, type BlobStore } from '../storage/blob-store.js';
import { newAtt, type Att, type InflateReport } from './inflate-attachment.js';
import type { InflateOutput } from './inflate-output.js';

export interface BudgetOptions {
  readonly store: BlobStore;
  readonly maxBytes: number;
  readonly inflate: boolean;
  readonly spoolDir: string;
  warn?(what: string, blob?: string): void;
  servedInline?(bytes: number): void;
}

type WithAtt = Container<{ att: Att | undefined }>;

/**
 * The response's budget of decoded attachment bytes, spent in document order: by stored blobs
 * that may be inflated, and by inline data the upstream holds, which is kept (in memory, then a
 * private file) until its end says whether it fits; what does not fit becomes a link.
 */
export class InflateBudget {
  private remaining: number;
  private inline: { readonly at: WithAtt; text: BufferedText | undefined; chars: number; tail: string } | undefined;

  constructor(
    private readonly opts: BudgetOptions,
    private readonly out: JsonWriter,
    private readonly output: InflateOutput,
    private readonly report: InflateReport,
  ) {
    this.remaining = opts.maxBytes;
  }

  /** The blob, if it is intact, settled and within what is left of the budget (which it then takes). */
  async stored(ref: BlobRef, declared: number | undefined): Promise<BlobInfo | undefined> {
    // The store is asked only when the blob could fit: a spent budget costs no round trips.
    if (!this.opts.inflate || this.remaining <= 0 || (declared !== undefined && declared > this.remaining)) return undefined;
    let info: BlobInfo | undefined;
    try {
      info = await this.opts.store.head(ref.id);
    } catch {
      this.opts.warn?.('the object store could not be asked for an attachment: linked instead', ref.id);
      return undefined;
    }
    if (!info || info.sha256 !== ref.sha256 || !servable(info.state)) {
      this.opts.warn?.('stored content is missing, altered or unsettled: linked instead', ref.id);
      return undefined;
    }
    if (info.size > this.remaining) return undefined;
    this.remaining -= info.size;
    return info;
  }

  /** Inline `data` of the attachment `at` begins. */
  startInline(at: WithAtt): void {
    this.inline = { at, text: new BufferedText(this.opts.spoolDir), chars: 0, tail: '' };
  }

  async chunk(piece: string): Promise<void> {
    const s = this.inline!;
    s.chars += piece.length;
    s.tail = (s.tail + piece).slice(-2);
    // No point keeping what cannot fit any more: from here on it is only counted.
    if (s.text && decodedSize(s.chars, '') > this.remaining) {
      await s.text.discard();
      s.text = undefined;
    }
    if (s.text) await s.text.write(escapeJsonText(piece));
  }

  /** The inline data is complete: sent in place if it fits, else the attachment needs a link. */
  async endInline(): Promise<void> {
    const s = this.inline!;
    this.inline = undefined;
    const size = decodedSize(s.chars, s.tail);
    const att = (s.at.state.att ??= newAtt());
    const text = s.text;
    if (text && size <= this.remaining) {
      this.remaining -= size;
      this.report.bytes += size;
      att.dataSent = true;
      this.opts.servedInline?.(size);
      this.out.member(s.at, 'data');
      this.out.write('"');
      this.output.enqueue({ ready: () => true, render: () => text.read(), discard: () => text.discard() }, text.memoryChars);
      this.out.write('"');
      return;
    }
    await text?.discard();
    att.overflow = true;
  }

  async discard(): Promise<void> {
    await this.inline?.text?.discard();
  }
}
