import { BLOB_EXTENSION_URL, findBlobRef, type BlobRef } from '../binary/reference.js';
import { GatewayError } from '../errors.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import { NOT_ATTACHMENT } from './attachment-kinds.js';
import { JsonTokenizer, type JsonToken } from './json-tokens.js';
import { Spill } from './spill.js';
import { ValueBuilder } from './value-builder.js';

/** Where a Binary's content can be fetched when it is not inline: Binary has no `url` element, so it sits on `_data`. */
export const CONTENT_URL_EXTENSION = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-url';

export interface InflateOptions {
  readonly store: BlobStore;
  /** Decoded bytes of attachment data the whole response may carry, stored or inline. */
  readonly maxBytes: number;
  /** Whether stored content is put back inline at all; false: every stored attachment gets a link. */
  readonly inflate: boolean;
  /**
   * Who owns the attachments below the document: `root` (a read: the resource itself), `entries`
   * (a search, history or batch/transaction answer: each `entry[i].resource`, never the Bundle,
   * which no one stored), or `by-type` (an operation's answer: entries of a Bundle whose type,
   * read before its entries, says it was assembled, and Parameters' resources; otherwise the root).
   */
  readonly owners: 'root' | 'entries' | 'by-type';
  /** Where inline values too large to decide on in memory are kept meanwhile. */
  readonly spoolDir: string;
  /** The URL a client follows for an attachment's content: `owner` is `Type/id`; `path` the attachment's FHIRPath, or undefined for Binary.data. */
  link(owner: string, path: string | undefined): string;
  /** Absolute URLs the upstream wrote (fullUrl, Bundle.link.url, response.location), as the client must see them. */
  publicUrl(url: string): string;
  /** Content that could not be served as the resource says (for the log: never content, never URLs). */
  warn?(what: string, blob?: string): void;
}

/** What one run did, for the log and the tests. */
export interface InflateReport {
  inflated: number;
  linked: number;
  /** Decoded bytes of attachment data sent (stored and inline). */
  bytes: number;
}

/** Bundle types an operation assembles from resources stored one by one (each the owner of its attachments). */
const ASSEMBLED_BUNDLE_TYPES = new Set(['searchset', 'history', 'batch-response', 'transaction-response']);
/** What each held slot costs against MAX_PENDING_CHARS besides its text: waiting slots must not be free. */
const SLOT_COST = 512;
/** Replaces our extension URL where the gateway did not put it: the client never sees our URL. */
const REMOVED_URL = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference-removed';
const MAX_KEY = 1024;
const MAX_HELD = 64 * 1024;
const MAX_HELD_DEPTH = 16;
const MAX_DEPTH = 128;
/** JSON held while an attachment waits for its resource's id (servers may write `id` last). */
const MAX_PENDING_CHARS = 8 * 1024 * 1024;

/** The resource whose id governs the attachments below it: blobs are served only to their owner. */
interface Owner {
  type: string | undefined;
  id: string | undefined;
  ended: boolean;
}

interface ObjectFrame {
  readonly kind: 'object';
  readonly name: string | undefined;
  /** FHIRPath from the owner to here, e.g. `.content[0].attachment`. */
  readonly path: string;
  readonly root: boolean;
  readonly owner: Owner | undefined;
  /** Set on an owner frame: its Owner. */
  readonly owns: Owner | undefined;
  count: number;
  resourceType: string | undefined;
  bundleType: string | undefined;
  hasUrl: boolean;
  /** resourceType/id/type seen here (duplicates refused). */
  identity: Set<string> | undefined;
  /** Attachment.size as the upstream holds it: lets a blob that cannot fit be linked without asking the store. */
  declaredSize: number | undefined;
  /** What this object's end must add: its attachment content or link. */
  att: Att | undefined;
}

interface ArrayFrame {
  readonly kind: 'array';
  readonly name: string | undefined;
  readonly path: string;
  readonly owner: Owner | undefined;
  count: number;
}

type Frame = ObjectFrame | ArrayFrame;

interface Att {
  /** Our reference, with the blob if it may be inflated (checked and within budget). */
  ref: { readonly ref: BlobRef; readonly inflate: BlobInfo | undefined } | undefined;
  /** What `_data` held besides our reference, re-emitted at the end. */
  rest: Record<string, unknown> | undefined;
  /** Inline data was sent: a stored copy must not add a second `data`. */
  dataSent: boolean;
  /** Inline data did not fit the budget: it needs a link instead. */
  overflow: boolean;
}

/** A part of the output that may have to wait: for its owner's id, or for a blob to stream. */
interface Slot {
  /** Memory it holds, counted against MAX_PENDING_CHARS while it waits (set by enqueue). */
  cost?: number;
  ready(): boolean;
  render(): AsyncIterable<string>;
  /** Releases what it holds when the output is abandoned. */
  discard(): Promise<void>;
}

type Segment = string | Slot;

/**
 * The rewrite engine's read direction: re-writes a FHIR JSON response token by token so that
 *
 * - an attachment (or Binary) whose content the gateway stored gets it back as `data`, streamed
 *   from the store and base64-encoded on the fly, while the response's decoded total stays within
 *   `maxBytes` (in document order); past that, or with inflation off, it gets a `url` to
 *   `$binary-access-read` through the gateway (for Binary, a `content-url` extension on `_data`);
 * - inline data the upstream holds is sent only within the same budget, else replaced by a link
 *   the same way: a client never receives more attachment bytes than the policy says;
 * - our stable reference never leaves (a client would otherwise send it back and be refused);
 * - `fullUrl`, `Bundle.link.url` and `response.location` move from the upstream's base to ours.
 *
 * A blob is served only to the resource it was written for (its owner), so a reference planted in
 * the upstream around the gateway reads nothing. Servers may write a resource's `id` after its
 * content, so output waits (bounded) until the owner's id is known. Nothing else is held: JSON
 * streams through, inline values over the in-memory bound go to a private spill file.
 */
export class Inflater {
  private readonly tokens = new JsonTokenizer((cause) => new GatewayError('UPSTREAM_INVALID', 'the response is not valid JSON', { cause }));
  private readonly stack: Frame[] = [];
  /** Output waiting behind a slot that is not ready yet; `out` is the text after the last of them. */
  private readonly queue: Segment[] = [];
  private pendingChars = 0;
  private out: string[] = [];
  private outChars = 0;
  /** Any token at all: an empty body is passed on as empty, not refused. */
  private sawToken = false;
  /** Depth of a value being dropped (a non-string attachment `data`). */
  private skipDepth = 0;
  private key: string | undefined;
  private lastKey: string | undefined;
  private next: { kind: 'emit' } | { kind: 'hold'; key: string } | { kind: 'data'; frame: ObjectFrame } = { kind: 'emit' };
  private assembly: { readonly key: string; readonly builder: ValueBuilder } | undefined;
  private spill: { readonly frame: ObjectFrame; spill: Spill | undefined; chars: number; tail: string } | undefined;
  private remaining: number;
  readonly report: InflateReport = { inflated: 0, linked: 0, bytes: 0 };

  constructor(private readonly opts: InflateOptions) {
    this.remaining = opts.maxBytes;
  }

  /** The rewritten response, piece by piece, for stream.pipeline (which supplies backpressure). */
  async *run(source: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
    // Whether everything so far was whitespace (an empty answer is passed on empty, not refused).
    let blank = true;
    try {
      for await (const chunk of source) {
        if (!this.sawToken && blank) blank = !/\S/.test(typeof chunk === 'string' ? chunk : chunk.toString('latin1'));
        for (const t of this.tokens.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) {
          const pending = this.token(t);
          if (pending) await pending;
        }
        this.checkPending();
        yield* this.flush(false);
      }
      if (!this.sawToken && blank) {
        // Nothing but (possibly) whitespace: an empty answer stays empty.
        return;
      }
      for (const t of this.tokens.end()) {
        const pending = this.token(t);
        if (pending) await pending;
      }
      if (this.stack.length) throw upstreamInvalid('the response ended inside a JSON value');
      yield* this.flush(true);
    } finally {
      await this.spill?.spill?.discard();
      for (const s of this.queue.splice(0)) if (typeof s !== 'string') await s.discard();
    }
  }

  private async *flush(final: boolean): AsyncGenerator<string> {
    while (this.queue.length) {
      const head = this.queue[0];
      if (typeof head === 'string') {
        this.queue.shift();
        this.pendingChars -= head.length;
        if (head) yield head;
        continue;
      }
      if (!final && !head.ready()) return;
      this.queue.shift();
      this.pendingChars -= head.cost ?? 0;
      yield* head.render();
    }
    if (this.out.length) {
      const text = this.out.join('');
      this.out = [];
      this.outChars = 0;
      if (text) yield text;
    }
  }

  private enqueue(slot: Slot, heldChars = 0): void {
    const text = this.out.join('');
    this.out = [];
    this.outChars = 0;
    slot.cost = SLOT_COST + heldChars;
    this.queue.push(text, slot);
    this.pendingChars += text.length + slot.cost;
    this.checkPending();
  }

  private emit(s: string): void {
    this.out.push(s);
    this.outChars += s.length;
  }

  /** Output waits only while a slot does: what waits is bounded, slots and held spills included. */
  private checkPending(): void {
    if (this.queue.length && this.pendingChars + this.outChars > MAX_PENDING_CHARS)
      throw upstreamInvalid("a resource's id comes too late in the response to serve its attachments");
  }

  private token(t: JsonToken): Promise<void> | undefined {
    this.sawToken = true;
    if (this.skipDepth) {
      if (t.name === 'startObject' || t.name === 'startArray') this.skipDepth++;
      else if (t.name === 'endObject' || t.name === 'endArray') this.skipDepth--;
      return undefined;
    }
    if (this.assembly) return this.assemble(t);
    if (this.spill) return this.spillToken(t);
    switch (t.name) {
      case 'startKey':
        this.key = '';
        return undefined;
      case 'endKey':
        this.onKey(this.key!);
        this.key = undefined;
        return undefined;
      case 'stringChunk':
        if (this.key !== undefined) {
          this.key += t.value;
          if (this.key.length > MAX_KEY) throw upstreamInvalid('a JSON key is too long');
          return undefined;
        }
        this.emit(escape(t.value));
        return undefined;
      case 'endString':
        this.emit('"');
        return undefined;
      case 'numberChunk':
        this.emit(t.value);
        return undefined;
      case 'endNumber':
        return undefined;
      case 'endObject':
        this.endObject();
        return undefined;
      case 'endArray':
        this.stack.pop();
        this.emit(']');
        return undefined;
      default:
        return this.startValue(t);
    }
  }

  private onKey(key: string): void {
    const frame = this.stack[this.stack.length - 1] as ObjectFrame;
    this.lastKey = key;
    if (key === 'data' && this.carriesContent(frame)) {
      this.next = { kind: 'data', frame };
      return;
    }
    if (key === 'url') frame.hasUrl = true;
    if (this.holds(frame, key)) {
      this.next = { kind: 'hold', key };
      return;
    }
    this.emitKey(frame, key);
  }

  /**
   * Attachment content: Binary.data at a resource's root (or at a root whose type is not known
   * yet: counted rather than let through), or `data` of any element but SampledData and Signature.
   */
  private carriesContent(frame: ObjectFrame): boolean {
    return frame.root ? frame.resourceType === undefined || frame.resourceType === 'Binary' : !NOT_ATTACHMENT.has(frame.name ?? '');
  }

  /** Members kept whole (they are small) because they are read or rewritten. */
  private holds(frame: ObjectFrame, key: string): boolean {
    switch (key) {
      case '_data':
      case 'fullUrl':
      // Every `url`: one equal to our extension URL is replaced wherever the gateway did not put it.
      case 'url':
        return true;
      case 'resourceType':
      case 'id':
        return frame.root && this.once(frame, key);
      case 'type':
        return this.stack.length === 1 && this.once(frame, key);
      case 'size':
        return !frame.root;
      case 'location':
        return frame.name === 'response';
      default:
        return false;
    }
  }

  /** Identity members decide ownership: a second one (parsers disagree on which wins) is refused. */
  private once(frame: ObjectFrame, key: string): true {
    frame.identity ??= new Set();
    if (frame.identity.has(key)) throw upstreamInvalid(`duplicate "${key}" in one resource`);
    frame.identity.add(key);
    return true;
  }

  private emitKey(frame: ObjectFrame, key: string): void {
    this.emit(`${frame.count++ ? ',' : ''}${JSON.stringify(key)}:`);
  }

  private startValue(t: JsonToken): Promise<void> | undefined {
    const next = this.next;
    this.next = { kind: 'emit' };
    if (next.kind === 'hold') {
      const key = next.key;
      this.assembly = {
        key,
        builder: new ValueBuilder({
          maxCost: MAX_HELD,
          maxDepth: MAX_HELD_DEPTH,
          tooLarge: (why) => upstreamInvalid(`"${key}" is ${why}`),
        }),
      };
      return this.assemble(t);
    }
    if (next.kind === 'data') {
      if (t.name === 'startString') {
        this.spill = { frame: next.frame, spill: new Spill(this.opts.spoolDir), chars: 0, tail: '' };
        return undefined;
      }
      // Attachment content that is not a string is not FHIR; it is not sent (nor counted) either.
      (next.frame.att ??= newAtt()).overflow = true;
      if (t.name === 'startObject' || t.name === 'startArray') this.skipDepth = 1;
      this.opts.warn?.('attachment data that is not a string was left out');
      return undefined;
    }
    const parent = this.stack[this.stack.length - 1];
    if (parent?.kind === 'array' && parent.count++) this.emit(',');
    switch (t.name) {
      case 'startObject': {
        this.emit('{');
        const seg = this.segment(parent);
        const owns = this.ownsAttachments(parent) ? { type: undefined, id: undefined, ended: false } : undefined;
        this.open({
          kind: 'object',
          name: parent?.kind === 'array' ? parent.name : this.lastKey,
          path: owns ? '' : (parent?.path ?? '') + seg,
          root: this.isRoot(parent),
          owner: owns ?? parent?.owner,
          owns,
          count: 0,
          resourceType: undefined,
          bundleType: undefined,
          hasUrl: false,
          identity: undefined,
          declaredSize: undefined,
          att: undefined,
        });
        return undefined;
      }
      case 'startArray':
        this.emit('[');
        this.open({ kind: 'array', name: this.lastKey, path: (parent?.path ?? '') + this.segment(parent), owner: parent?.owner, count: 0 });
        return undefined;
      case 'startString':
        this.emit('"');
        return undefined;
      case 'startNumber':
        return undefined;
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        this.emit(String(t.value));
        return undefined;
      default:
        throw upstreamInvalid('the response is not valid JSON');
    }
  }

  private segment(parent: Frame | undefined): string {
    if (!parent) return '';
    return parent.kind === 'array' ? `[${parent.count - 1}]` : `.${this.lastKey}`;
  }

  /** A resource: the document itself, a contained one, an entry's, a parameter's, an outcome. */
  private isRoot(parent: Frame | undefined): boolean {
    if (!parent) return true;
    return parent.kind === 'array' ? parent.name === 'contained' : this.lastKey === 'resource' || this.lastKey === 'outcome';
  }

  /**
   * Who a blob was written for (InflateOptions.owners): the document's resource, or each entry's.
   */
  private ownsAttachments(parent: Frame | undefined): boolean {
    const mode = this.opts.owners;
    if (!parent) return true;
    if (mode === 'root' || this.stack.length !== 3 || parent.kind !== 'object' || this.lastKey !== 'resource') return false;
    const list = this.stack[1];
    const top = this.stack[0] as ObjectFrame;
    if (list.kind !== 'array') return false;
    if (mode === 'entries') return list.name === 'entry';
    if (top.resourceType === 'Parameters') return list.name === 'parameter';
    // A type not read yet counts as stored: the root, whose id the upstream vouches for, owns.
    return top.resourceType === 'Bundle' && list.name === 'entry' && ASSEMBLED_BUNDLE_TYPES.has(top.bundleType ?? '');
  }

  private open(frame: Frame): void {
    if (this.stack.length >= MAX_DEPTH) throw upstreamInvalid('the response is nested too deeply');
    this.stack.push(frame);
  }

  /** A held member is complete: record what it says, and write it (rewritten) in its place. */
  private assemble(t: JsonToken): Promise<void> | undefined {
    const a = this.assembly!;
    if (!a.builder.push(t)) return undefined;
    this.assembly = undefined;
    const frame = this.stack[this.stack.length - 1] as ObjectFrame;
    const v = a.builder.value;
    switch (a.key) {
      case '_data':
        return this.onDataElement(frame, v);
      case 'resourceType':
        if (typeof v === 'string') {
          frame.resourceType = v;
          if (frame.owns) frame.owns.type = v;
        }
        break;
      case 'id':
        if (frame.owns && typeof v === 'string') frame.owns.id = v;
        break;
      case 'type':
        if (typeof v === 'string') frame.bundleType = v;
        break;
      case 'size':
        if (typeof v === 'number') frame.declaredSize = v;
        break;
      case 'url':
        if (v === BLOB_EXTENSION_URL) {
          this.opts.warn?.('a blob reference the gateway did not write was removed');
          this.emitKey(frame, 'url');
          this.emit(JSON.stringify(REMOVED_URL));
          return undefined;
        }
        this.emitKey(frame, 'url');
        this.emit(JSON.stringify(typeof v === 'string' && frame.name === 'link' ? this.opts.publicUrl(v) : v));
        return undefined;
      default:
        // fullUrl, Bundle.link.url, response.location
        this.emitKey(frame, a.key);
        this.emit(JSON.stringify(typeof v === 'string' ? this.opts.publicUrl(v) : v));
        return undefined;
    }
    this.emitKey(frame, a.key);
    this.emit(JSON.stringify(v));
    return undefined;
  }

  /** `_data`: without our reference it stays as it was, in place; with it, the object's end decides. */
  private async onDataElement(frame: ObjectFrame, v: unknown): Promise<void> {
    const element = v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
    const ref = element ? findBlobRef(element['extension']) : undefined;
    const ours =
      element !== undefined &&
      Array.isArray(element['extension']) &&
      (element['extension'] as unknown[]).some((e) => (e as { url?: unknown } | null)?.url === BLOB_EXTENSION_URL);
    const binaryRoot = frame.root && frame.resourceType === 'Binary';
    if (!element || (!ours && !binaryRoot)) {
      this.emitKey(frame, '_data');
      this.emit(JSON.stringify(v));
      return;
    }
    if (ours && !ref) this.opts.warn?.('a malformed blob reference was removed');
    const att = (frame.att ??= newAtt());
    att.rest = element ? withoutReference(element) : (v as Record<string, unknown> | undefined);
    if (!ref || att.ref) return;
    att.ref = { ref, inflate: await this.inflatable(ref, frame.declaredSize) };
  }

  /** The blob, if it is intact, settled and within what is left of the budget (which it then takes). */
  private async inflatable(ref: BlobRef, declared: number | undefined): Promise<BlobInfo | undefined> {
    // The store is asked only when the blob could fit: a spent budget costs no round trips.
    if (!this.opts.inflate || this.remaining <= 0 || (declared !== undefined && declared > this.remaining)) return undefined;
    let info: BlobInfo | undefined;
    try {
      info = await this.opts.store.head(ref.id);
    } catch {
      this.opts.warn?.('the object store could not be asked for an attachment: linked instead', ref.id);
      return undefined;
    }
    if (!info || info.sha256 !== ref.sha256 || info.state !== 'linked') {
      this.opts.warn?.('stored content is missing, altered or unsettled: linked instead', ref.id);
      return undefined;
    }
    if (info.size > this.remaining) return undefined;
    this.remaining -= info.size;
    return info;
  }

  /** Inline `data` of an attachment: kept until its end, then sent in place if it fits the budget. */
  private async spillToken(t: JsonToken): Promise<void> {
    const s = this.spill!;
    if (t.name === 'stringChunk') {
      s.chars += t.value.length;
      s.tail = (s.tail + t.value).slice(-2);
      // No point keeping what cannot fit any more: from here on it is only counted.
      if (s.spill && decodedSize(s.chars, '') > this.remaining) {
        await s.spill.discard();
        s.spill = undefined;
      }
      if (s.spill) await s.spill.write(escape(t.value));
      return;
    }
    // endString
    this.spill = undefined;
    const size = decodedSize(s.chars, s.tail);
    const att = (s.frame.att ??= newAtt());
    if (s.spill && size <= this.remaining) {
      this.remaining -= size;
      this.report.bytes += size;
      att.dataSent = true;
      this.emitKey(s.frame, 'data');
      this.emit('"');
      const spill = s.spill;
      this.enqueue({ ready: () => true, render: () => spill.read(), discard: () => spill.discard() }, spill.memoryChars);
      this.emit('"');
      return;
    }
    await s.spill?.discard();
    att.overflow = true;
  }

  private endObject(): void {
    const frame = this.stack.pop() as ObjectFrame;
    if (frame.owns) frame.owns.ended = true;
    const att = frame.att;
    if (att && (att.ref || att.overflow || att.rest)) this.finishAttachment(frame, att);
    this.emit('}');
  }

  /**
   * What an attachment gets at its end: the stored content (if it fits and belongs to this
   * resource), else a link, plus whatever else `_data` held. Decided once the owner's id is known.
   */
  private finishAttachment(frame: ObjectFrame, att: Att): void {
    const owner = frame.owner!;
    const binaryRoot = frame.root && frame.resourceType === 'Binary';
    let comma = frame.count > 0;
    const member = (key: string) => {
      const s = `${comma ? ',' : ''}${JSON.stringify(key)}:`;
      comma = true;
      return s;
    };
    const store = this.opts.store;
    const report = this.report;
    const warn = this.opts.warn;
    const opts = this.opts;
    const blob = att.ref && !att.dataSent ? att.ref.inflate : undefined;
    const needsLink = (att.ref !== undefined && !att.dataSent) || att.overflow;
    const hasUrl = frame.hasUrl;
    const path = `${frame.path}`;
    this.enqueue({
      ready: () => owner.ended || (owner.type !== undefined && owner.id !== undefined),
      discard: async () => undefined,
      async *render() {
        const ownerKey = owner.type && owner.id ? `${owner.type}/${owner.id}` : undefined;
        let streamed = false;
        if (blob) {
          if (ownerKey && blob.owner === ownerKey) {
            let body: AsyncIterable<Buffer> | undefined;
            try {
              body = (await store.get(blob.id)).body;
            } catch {
              warn?.('stored content could not be opened: linked instead', blob.id);
            }
            if (body) {
              yield `${member('data')}"`;
              yield* base64(body, blob.size);
              yield '"';
              streamed = true;
              report.inflated++;
              report.bytes += blob.size;
            }
          } else warn?.('stored content was not written for this resource: not served', blob.id);
        }
        let rest = att.rest;
        if (needsLink && !streamed) {
          if (!ownerKey) warn?.('an attachment of a resource without an id cannot be linked');
          else if (binaryRoot) {
            const ext = Array.isArray(rest?.['extension']) ? (rest['extension'] as unknown[]) : [];
            const url = frame.owns ? opts.link(ownerKey, undefined) : opts.link(ownerKey, `${owner.type}${path}`);
            rest = { ...rest, extension: [...ext, { url: CONTENT_URL_EXTENSION, valueUrl: url }] };
            report.linked++;
          } else if (!hasUrl) {
            yield `${member('url')}${JSON.stringify(opts.link(ownerKey, `${owner.type}${path}`))}`;
            report.linked++;
          }
        }
        if (rest && Object.keys(rest).length) yield `${member('_data')}${JSON.stringify(rest)}`;
      },
    });
  }
}

function newAtt(): Att {
  return { ref: undefined, rest: undefined, dataSent: false, overflow: false };
}

/** `_data` without our reference extension (and without an emptied extension list). */
function withoutReference(element: Record<string, unknown>): Record<string, unknown> {
  const { extension, ...rest } = element;
  const kept = Array.isArray(extension) ? extension.filter((e) => (e as { url?: unknown } | null)?.url !== BLOB_EXTENSION_URL) : [];
  return kept.length ? { ...rest, extension: kept } : rest;
}

/** Decoded bytes of a base64 text of `chars` characters ending in `tail` (an upper bound when it holds whitespace). */
function decodedSize(chars: number, tail: string): number {
  const pad = tail.endsWith('==') ? 2 : tail.endsWith('=') ? 1 : 0;
  return Math.max(0, Math.floor((chars * 3) / 4) - pad);
}

/** What JSON.stringify would escape: quotes, backslashes, controls, and lone surrogates (well-formed JSON.stringify). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

function escape(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/** Base64 of a byte stream, carrying the 0–2 bytes that do not fill a group; fails if the stream is not `size` bytes. */
async function* base64(body: AsyncIterable<Buffer>, size: number): AsyncGenerator<string> {
  let carry = Buffer.alloc(0);
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > size) throw new GatewayError('BLOB_UNREADABLE', 'the stored content is longer than recorded');
    const all = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const whole = all.length - (all.length % 3);
    carry = Buffer.from(all.subarray(whole));
    if (whole) yield all.subarray(0, whole).toString('base64');
  }
  if (carry.length) yield carry.toString('base64');
  // Headers are out by now: a short blob can only cut the response, never complete it wrongly.
  if (n !== size) throw new GatewayError('BLOB_UNREADABLE', 'the stored content ended early');
}

function upstreamInvalid(message: string): GatewayError {
  return new GatewayError('UPSTREAM_INVALID', message);
}
