import { Transform, type TransformCallback } from 'node:stream';
import { BLOB_EXTENSION_URL, blobExtension } from '../binary/reference.js';
import { allowed, essence } from '../content/media-type.js';
import { forEntry, GatewayError, isGatewayError } from '../errors.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import { NOT_ATTACHMENT } from './attachment-kinds.js';
import { DataSink } from './data-sink.js';
import { JsonTokenizer, type JsonToken } from './json-tokens.js';
import { ValueBuilder } from './value-builder.js';

export interface ExternalizeOptions {
  readonly store: BlobStore;
  /** Attachment data smaller than this (decoded bytes) stays inline, still checked. */
  readonly minBytes: number;
  /** Binary.data is always externalized unless this says otherwise: raw and FHIR Binary then behave alike. */
  readonly binaryMinBytes?: number;
  /** Per value; past it the request fails with PAYLOAD_TOO_LARGE. */
  readonly maxBytes: number;
  /** The media types a resource type may carry (the policy's `content.allowedTypes`). */
  allowedTypes(resourceType: string): readonly string[];
}

/** One attachment (or Binary) whose data now lives in the store. */
export interface ExternalizedBlob {
  readonly info: BlobInfo;
  /** The declared type, checked: what the blob's metadata should say. */
  readonly contentType: string;
  /** The resource the attachment belongs to. */
  readonly resourceType: string;
  /** In a Bundle: the index of the entry the attachment is in. */
  readonly entry: number | undefined;
}

/** Members held back until their object ends: they are rewritten when its data is externalized. */
const HELD = new Set(['size', 'hash', '_data']);
/** Members whose duplicates are refused: parsers disagree on which one wins. */
const SINGLE = new Set(['data', 'contentType', 'resourceType', 'size', 'hash', '_data', 'securityContext']);
/** Members whose value is itself a resource. */
const RESOURCE_MEMBERS = new Set(['resource', 'outcome']);
const MAX_KEY = 1024;
const MAX_HELD_CHARS = 64 * 1024;
const MAX_HELD_DEPTH = 16;
const MAX_CAPTURE = 256;
const MAX_DEPTH = 128;

interface ObjectFrame {
  readonly kind: 'object';
  readonly name: string | undefined;
  readonly root: boolean;
  count: number;
  seen: Set<string> | undefined;
  held: Map<string, unknown> | undefined;
  contentType: string | undefined;
  resourceType: string | undefined;
  data: { readonly result: Awaited<ReturnType<DataSink['end']>> } | undefined;
  /** On a resource root: its attachments, checked against its allow-list at its end. */
  attachments: { readonly declared: string; readonly stored: Stored | undefined }[] | undefined;
}

/** An ExternalizedBlob while its resource is still being read. */
interface Stored {
  info: BlobInfo;
  contentType: string;
  resourceType: string;
  entry: number | undefined;
}

interface ArrayFrame {
  readonly kind: 'array';
  readonly name: string | undefined;
  count: number;
}

type Frame = ObjectFrame | ArrayFrame;

/**
 * The rewrite engine's write direction: reads FHIR JSON token by token and lifts every
 * Attachment.data and Binary.data out into the BlobStore as it streams past (decode → sniff →
 * hash → store), writing the resource back with `size`, `hash` and a stable reference in
 * `_data.extension` in place of the bytes. Nothing but small members is ever held in memory.
 *
 * Every attachment is checked: its declared `contentType` against the sniffed content and
 * against the allow-list of the resource that carries it. On any failure, the blobs this run
 * wrote are deleted before the error surfaces; on success the caller owns them (`blobs`) and
 * links or deletes them once the upstream has answered.
 */
export class Externalizer extends Transform {
  private readonly stored: Stored[] = [];
  private readonly tokens = new JsonTokenizer();
  private readonly stack: Frame[] = [];
  private out: string[] = [];
  private key: { text: string } | undefined;
  /** What the next value is for: emitted, held back, or a candidate data value. */
  private next:
    | { kind: 'emit' }
    | { kind: 'hold'; key: string }
    | { kind: 'data'; frame: ObjectFrame }
    | { kind: 'capture'; frame: ObjectFrame; field: 'contentType' | 'resourceType' } = { kind: 'emit' };
  /** A held member being built: its key and its builder. */
  private assembly: { readonly key: string; readonly builder: ValueBuilder } | undefined;
  private sink: DataSink | undefined;
  private capture: { frame: ObjectFrame; field: 'contentType' | 'resourceType'; text: string } | undefined;
  /** Every string value is compared with our extension URL: only the gateway writes references. */
  private probe: string | undefined;
  private readonly abort = new AbortController();
  private entry: number | undefined;
  private failed = false;

  constructor(private readonly opts: ExternalizeOptions) {
    super({ readableHighWaterMark: 64 * 1024 });
  }

  /** The top-level resource's type, once the body has been read. */
  rootType: string | undefined;
  /** The top-level resource's securityContext member as sent (any shape), once the body has been read. */
  rootSecurityContext: unknown;

  /** What this run stored; the caller's to link or delete once the body has ended without error. */
  get blobs(): readonly ExternalizedBlob[] {
    return this.stored;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.run(() => this.tokens.push(chunk), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.run(
      () => this.tokens.end(),
      (err) => {
        if (!err && this.stack.length) err = new GatewayError('BAD_REQUEST', 'the body is not valid JSON');
        cb(err);
      },
    );
  }

  /** Also runs after a normal end (autoDestroy): only a run cut short, or failed, loses its blobs. */
  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!err && this.readableEnded) {
      cb(null);
      return;
    }
    void this.cleanUp(err ?? new Error('aborted')).then(() => cb(err));
  }

  private run(read: () => readonly JsonToken[], cb: TransformCallback): void {
    let tokens: readonly JsonToken[];
    try {
      tokens = read();
    } catch (err) {
      this.fail(err, cb);
      return;
    }
    this.consume(tokens, 0).then(
      () => {
        if (this.out.length) this.push(this.out.join(''));
        this.out = [];
        cb();
      },
      (err: unknown) => this.fail(err, cb),
    );
  }

  /** Synchronous for ordinary tokens; awaits only where the store or a content check must answer. */
  private async consume(tokens: readonly JsonToken[], from: number): Promise<void> {
    for (let i = from; i < tokens.length; i++) {
      const pending = this.token(tokens[i]);
      if (pending) await pending;
    }
  }

  private fail(err: unknown, cb: TransformCallback): void {
    // Store failures arrive as GatewayErrors already (DataSink); anything else is ours.
    const e0 = isGatewayError(err) ? err : new GatewayError('INTERNAL', 'the body could not be rewritten', { cause: err });
    // In a Bundle, the refusal names the entry it is about (as the entry-by-entry checks do).
    const e = this.entry !== undefined && e0.code !== 'INTERNAL' && e0.code !== 'STORAGE_UNAVAILABLE' ? forEntry(e0, this.entry) : e0;
    void this.cleanUp(e).then(() => cb(e));
  }

  /** Removes everything this run stored: a failed request leaves no blob behind. */
  private async cleanUp(err: Error): Promise<void> {
    if (this.failed) return;
    this.failed = true;
    this.abort.abort(err);
    await this.sink?.abort(err);
    this.sink = undefined;
    await Promise.all(this.stored.splice(0).map((b) => this.opts.store.delete(b.info.id).catch(() => undefined)));
  }

  private token(t: JsonToken): Promise<void> | undefined {
    if (this.assembly) {
      this.assemble(t);
      return undefined;
    }
    if (this.sink) return this.dataToken(t);
    switch (t.name) {
      case 'startKey':
        this.key = { text: '' };
        return undefined;
      case 'endKey':
        this.onKey(this.key!.text);
        this.key = undefined;
        return undefined;
      case 'stringChunk':
        if (this.key) {
          this.key.text += t.value;
          if (this.key.text.length > MAX_KEY) throw new GatewayError('BAD_REQUEST', 'a JSON key is too long');
          return undefined;
        }
        this.stringChunk(t.value);
        return undefined;
      case 'startString':
        return this.startValue(t);
      case 'endString':
        this.endString();
        return undefined;
      case 'numberChunk':
        this.out.push(t.value);
        return undefined;
      case 'endNumber':
        return undefined;
      case 'endObject':
        return this.endObject();
      case 'endArray':
        this.stack.pop();
        this.out.push(']');
        return undefined;
      default:
        return this.startValue(t);
    }
  }

  /** A key was read: decides where its value goes before the value arrives. */
  private onKey(key: string): void {
    const frame = this.stack[this.stack.length - 1] as ObjectFrame;
    this.lastKey = key;
    if (SINGLE.has(key)) {
      frame.seen ??= new Set();
      if (frame.seen.has(key)) throw new GatewayError('BAD_REQUEST', `duplicate member "${key}" in one JSON object`);
      frame.seen.add(key);
    }
    // The top-level resource's securityContext is kept (it is small) for the caller's access check.
    if (HELD.has(key) || (key === 'securityContext' && frame.root && this.stack.length === 1)) {
      this.next = { kind: 'hold', key };
      return;
    }
    if (key === 'data' && (frame.root || !NOT_ATTACHMENT.has(frame.name ?? ''))) {
      this.next = { kind: 'data', frame };
      return;
    }
    this.emitKey(frame, key);
    if (key === 'contentType' || (key === 'resourceType' && frame.root)) this.next = { kind: 'capture', frame, field: key };
  }

  private emitKey(frame: ObjectFrame, key: string): void {
    this.out.push(`${frame.count++ ? ',' : ''}${JSON.stringify(key)}:`);
  }

  /** The first token of a value (anything but a key or the end of a container). */
  private startValue(t: JsonToken): Promise<void> | undefined {
    const next = this.next;
    this.next = { kind: 'emit' };
    if (next.kind === 'hold') {
      const key = next.key;
      this.assembly = {
        key,
        builder: new ValueBuilder({
          maxCost: MAX_HELD_CHARS,
          maxDepth: MAX_HELD_DEPTH,
          tooLarge: (why) => new GatewayError('BAD_REQUEST', `"${key}" is ${why}`),
          onString: (str) => {
            if (str === BLOB_EXTENSION_URL) throw injected();
          },
        }),
      };
      this.assemble(t);
      return undefined;
    }
    if (next.kind === 'data') {
      if (t.name === 'startString') {
        const binary = next.frame.root;
        this.sink = new DataSink({
          store: this.opts.store,
          minBytes: binary ? (this.opts.binaryMinBytes ?? 0) : this.opts.minBytes,
          maxBytes: this.opts.maxBytes,
          signal: this.abort.signal,
        });
        return undefined;
      }
      // Not a string: not attachment content; the upstream judges it.
      this.emitKey(next.frame, 'data');
    }
    const parent = this.stack[this.stack.length - 1];
    if (parent?.kind === 'array' && parent.count++) this.out.push(',');
    switch (t.name) {
      case 'startObject':
        // An item of the top-level Bundle's entry array: what its attachments belong to.
        if (this.stack.length === 2 && parent?.kind === 'array' && parent.name === 'entry') this.entry = parent.count - 1;
        this.out.push('{');
        this.open({
          kind: 'object',
          name: this.memberName(parent),
          root: this.isRoot(parent),
          count: 0,
          seen: undefined,
          held: undefined,
          contentType: undefined,
          resourceType: undefined,
          data: undefined,
          attachments: undefined,
        });
        return undefined;
      case 'startArray':
        this.out.push('[');
        this.open({ kind: 'array', name: this.memberName(parent), count: 0 });
        return undefined;
      case 'startString':
        this.out.push('"');
        this.probe = '';
        if (next.kind === 'capture') this.capture = { frame: next.frame, field: next.field, text: '' };
        return undefined;
      case 'startNumber':
        return undefined;
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        this.out.push(String(t.value));
        return undefined;
      default:
        throw new GatewayError('BAD_REQUEST', 'the body is not valid JSON');
    }
  }

  /** The member an object or array is the value of; array items carry their array's name. */
  private lastKey: string | undefined;

  private memberName(parent: Frame | undefined): string | undefined {
    return parent?.kind === 'array' ? parent.name : this.lastKey;
  }

  private isRoot(parent: Frame | undefined): boolean {
    if (!parent) return true;
    return parent.kind === 'array' ? parent.name === 'contained' : RESOURCE_MEMBERS.has(this.lastKey ?? '');
  }

  private open(frame: Frame): void {
    if (this.stack.length >= MAX_DEPTH) throw new GatewayError('BAD_REQUEST', 'the JSON is nested too deeply');
    this.stack.push(frame);
  }

  private stringChunk(value: string): void {
    this.out.push(JSON.stringify(value).slice(1, -1));
    if (this.probe !== undefined) {
      this.probe = this.probe.length + value.length <= BLOB_EXTENSION_URL.length ? this.probe + value : undefined;
    }
    if (this.capture) {
      this.capture.text += value;
      if (this.capture.text.length > MAX_CAPTURE) throw new GatewayError('BAD_REQUEST', `${this.capture.field} is too long`);
    }
  }

  private endString(): void {
    this.out.push('"');
    if (this.probe === BLOB_EXTENSION_URL) throw injected();
    this.probe = undefined;
    if (this.capture) {
      this.capture.frame[this.capture.field] = this.capture.text;
      this.capture = undefined;
    }
  }

  private async dataToken(t: JsonToken): Promise<void> {
    if (t.name === 'stringChunk') return this.sink!.write(t.value);
    // endString: the only other token inside a string.
    const sink = this.sink!;
    const result = await sink.end();
    this.sink = undefined;
    (this.stack[this.stack.length - 1] as ObjectFrame).data = { result };
    // Recorded at once, so that a failure from here on deletes it too.
    if (result.kind === 'blob')
      this.stored.push({ info: result.info, contentType: 'application/octet-stream', resourceType: '', entry: this.entry });
  }

  /** Rewrites what the object's data needs, checks it, and closes the object. */
  private async endObject(): Promise<void> {
    const frame = this.stack.pop() as ObjectFrame;
    if (frame.data) await this.finishData(frame);
    else this.emitHeld(frame, frame.held);
    if (frame.root) this.checkResource(frame);
    if (!this.stack.length) {
      this.rootType = frame.resourceType;
      this.rootSecurityContext = frame.held?.get('securityContext');
    }
    // An entry of the top-level Bundle ended: what fails from here on is not that entry's.
    const list = this.stack[1];
    if (this.stack.length === 2 && list?.kind === 'array' && list.name === 'entry') this.entry = undefined;
    this.out.push('}');
  }

  private async finishData(frame: ObjectFrame): Promise<void> {
    const { result } = frame.data!;
    const binary = frame.root;
    if (binary && frame.resourceType !== 'Binary')
      throw new GatewayError(
        'BAD_REQUEST',
        `a "data" member at the root of a resource is only valid in Binary, not ${frame.resourceType ?? 'a resource without resourceType'}`,
      );
    const declared = essence(frame.contentType);
    if (!declared)
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        binary ? 'Binary.contentType is required' : 'an Attachment with data needs a valid contentType',
      );
    const bad = await result.sniffer.judge(declared);
    if (bad) throw bad;
    const stored = result.kind === 'blob' ? this.stored.find((b) => b.info.id === result.info.id) : undefined;
    if (stored) stored.contentType = declared;
    ((binary ? frame : this.nearestRoot()).attachments ??= []).push({ declared, stored });
    const held = new Map(frame.held);
    if (result.kind === 'inline') {
      this.emitKey(frame, 'data');
      this.out.push(JSON.stringify(result.bytes.toString('base64')));
      this.emitHeld(frame, held);
      return;
    }
    const { info } = result;
    if (!binary) {
      const size = held.get('size');
      const hash = held.get('hash');
      if (size !== undefined && size !== info.size)
        throw new GatewayError('BAD_REQUEST', `Attachment.size says ${String(size)} bytes, the data has ${info.size}`);
      if (hash !== undefined && hash !== info.sha1)
        throw new GatewayError('BAD_REQUEST', 'Attachment.hash does not match the SHA-1 of the data');
      held.set('size', info.size);
      held.set('hash', info.sha1);
    }
    const prior = held.get('_data');
    const element = prior && typeof prior === 'object' && !Array.isArray(prior) ? (prior as Record<string, unknown>) : {};
    const extension = Array.isArray(element['extension']) ? (element['extension'] as unknown[]) : [];
    held.set('_data', { ...element, extension: [...extension, blobExtension({ id: info.id, sha256: info.sha256 })] });
    this.emitHeld(frame, held);
  }

  private emitHeld(frame: ObjectFrame, held: Map<string, unknown> | undefined): void {
    if (!held) return;
    for (const [k, v] of held) {
      this.emitKey(frame, k);
      this.out.push(JSON.stringify(v));
    }
  }

  private nearestRoot(): ObjectFrame {
    for (let i = this.stack.length - 1; i >= 0; i--) {
      const f = this.stack[i];
      if (f.kind === 'object' && f.root) return f;
    }
    // Attachments always sit inside a resource; data in a non-resource document has no policy.
    throw new GatewayError('BAD_REQUEST', 'attachment data outside a FHIR resource');
  }

  /** The allow-list of the resource that carries the attachments; known only once the resource is complete. */
  private checkResource(frame: ObjectFrame): void {
    if (!frame.attachments) return;
    const rt = frame.resourceType;
    if (!rt) throw new GatewayError('BAD_REQUEST', 'a resource with attachment data has no resourceType');
    const allow = this.opts.allowedTypes(rt);
    for (const { declared, stored } of frame.attachments) {
      if (!allowed(declared, allow)) throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for ${rt}`);
      if (stored) stored.resourceType = rt;
    }
  }

  /** Builds a held member's value in memory, bounded: these are small by nature. */
  private assemble(t: JsonToken): void {
    const a = this.assembly!;
    if (!a.builder.push(t)) return;
    const frame = this.stack[this.stack.length - 1] as ObjectFrame;
    (frame.held ??= new Map()).set(a.key, a.builder.value);
    this.assembly = undefined;
  }
}

function injected(): GatewayError {
  return new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only');
}
