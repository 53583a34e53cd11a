import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { Sniffer } from '../content/sniff.js';
import { storeFailure } from '../errors/map.js';
import type { BlobInfo, BlobStore, BlobTags } from '../storage/blob-store.js';
import { Base64Decoder } from '../lib/base64.js';

/** The stringChunk pieces the tokenizer emits are small; decoding and writing in larger batches is far cheaper. */
const BATCH_CHARS = 64 * 1024;

export interface DataSinkOptions {
  readonly store: BlobStore;
  /** Content smaller than this stays inline; 0 externalizes everything. */
  readonly minBytes: number;
  /** Per value: past this the put fails with PAYLOAD_TOO_LARGE and nothing is kept. */
  readonly maxBytes: number;
  readonly signal: AbortSignal;
  /** BlobInfo.intent and purpose: what the blob is written for, when the request says. */
  readonly tags?: BlobTags;
}

export type SinkResult =
  | { readonly kind: 'inline'; readonly bytes: Buffer; readonly sniffer: Sniffer }
  | { readonly kind: 'blob'; readonly info: BlobInfo; readonly sniffer: Sniffer };

/**
 * Where one base64 `data` value goes as it streams past: decoded, watched by a Sniffer, and held
 * back until it reaches `minBytes`; from then on streamed into the BlobStore (as `pending`, type
 * fixed later, since `contentType` may come after `data`). A value that stays small comes back
 * inline. Backpressure: `write` resolves only once the store has taken the bytes.
 */
export class DataSink {
  private readonly decoder = new Base64Decoder();
  readonly sniffer = new Sniffer();
  private pieces: string[] = [];
  private pieceChars = 0;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private body: PassThrough | undefined;
  private put: Promise<BlobInfo> | undefined;

  constructor(private readonly opts: DataSinkOptions) {}

  /** Takes the next piece of the base64 text; resolves when it may be given more. */
  async write(text: string): Promise<void> {
    this.pieces.push(text);
    this.pieceChars += text.length;
    if (this.pieceChars >= BATCH_CHARS) await this.flushPieces();
  }

  async end(): Promise<SinkResult> {
    await this.flushPieces();
    this.decoder.end();
    if (!this.body) return { kind: 'inline', bytes: Buffer.concat(this.held, this.heldBytes), sniffer: this.sniffer };
    this.body.end();
    return { kind: 'blob', info: await this.put!, sniffer: this.sniffer };
  }

  /** Stops a put in progress; the store removes what it wrote. Safe to call at any time. */
  async abort(err: Error): Promise<void> {
    if (!this.body) return;
    this.body.destroy(err);
    await this.put?.catch(() => undefined);
  }

  private async flushPieces(): Promise<void> {
    if (!this.pieceChars) return;
    const text = this.pieces.length === 1 ? this.pieces[0] : this.pieces.join('');
    this.pieces = [];
    this.pieceChars = 0;
    const bytes = this.decoder.push(text);
    if (!bytes.length) return;
    this.sniffer.observe(bytes);
    if (!this.body) {
      this.held.push(bytes);
      this.heldBytes += bytes.length;
      if (this.heldBytes < this.opts.minBytes) return;
      this.start();
      const first = Buffer.concat(this.held, this.heldBytes);
      this.held = [];
      await this.send(first);
      return;
    }
    await this.send(bytes);
  }

  private start(): void {
    this.body = new PassThrough();
    // The store attaches its listeners only once it has opened its file (or connection); an abort
    // before that (a truncated final base64 group) destroys this stream with an error nobody would
    // hear yet, and an unheard 'error' takes the process down. The put reports it.
    this.body.on('error', () => undefined);
    this.put = this.opts.store
      .put(
        this.body,
        { contentType: 'application/octet-stream', ...this.opts.tags },
        { maxBytes: this.opts.maxBytes, signal: this.opts.signal },
      )
      .catch((err: unknown) => {
        throw storeFailure(err);
      });
    // Seen by whoever awaits `put`; this only keeps an early failure from being "unhandled".
    this.put.catch(() => undefined);
  }

  /** Writes with backpressure; a put that fails meanwhile rejects here instead of waiting for a drain that never comes. */
  private async send(bytes: Buffer): Promise<void> {
    if (this.body!.write(bytes)) return;
    await Promise.race([once(this.body!, 'drain'), this.put!.then(() => undefined)]);
  }
}
