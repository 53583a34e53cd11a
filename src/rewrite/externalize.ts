import { Transform, type TransformCallback } from 'node:stream';
import { forEntry, GatewayError, isGatewayError } from '../errors/catalogue.js';
import { NOT_ATTACHMENT } from '../fhir/attachment-kinds.js';
import { isStepName, MAX_PATH_STEPS } from '../fhir/attachment-path.js';
import { BLOB_EXTENSION_URL, blobExtension } from '../fhir/blob-reference.js';
import { essence } from '../content/media-type.js';
import {
  CONTENT_SHA256_EXTENSION,
  CONTENT_URL_EXTENSION,
  holdsSignedFileUrl,
  isSignedFileUrl,
  parseContentLink,
  SIGNED_FILE_URL_SCREEN,
} from '../fhir/content-link.js';
import { bundleEntryOf, isResourceRoot } from '../fhir/json-positions.js';
import type { JsonToken } from '../json/tokenizer.js';
import { JsonWalker, pathBelow, type Container, type Route, type WalkPolicy } from '../json/walker.js';
import { JsonWriter } from '../json/writer.js';
import type { BlobInfo, BlobStore, BlobTags } from '../storage/blob-store.js';
import { DataSink, type SinkResult } from './data-sink.js';
import { checkAllowed, rewrittenMembers, type ObjectState, type Stored } from './externalize-attachment.js';

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
  /** BlobInfo.intent (a single resource's write; not a Bundle's) and purpose of every blob written. */
  readonly tags?: BlobTags;
  /** The gateway's own content links coming back in the body (see Externalizer.relink). */
  readonly links?: ContentLinks;
}

/**
 * Links of contentLink()'s shape: a read answers them in place of data it does not inline, and a
 * client doing read-modify-update sends them back. Taken as plain URLs they would leave the new
 * version without its content (and the sweeper would, rightly, delete it).
 */
export interface ContentLinks {
  /** The public base links start with. */
  readonly base: string;
  /**
   * An update of one resource (`Type/id`): its own links are turned back into the reference to the
   * content its current version has at the linked path (`resolve`; undefined when it has none).
   * `mayRead`: whether the caller may read the type (who may not gets one refusal, whatever is there).
   */
  readonly own?: {
    readonly key: string;
    readonly mayRead: boolean;
    resolve(path: string | undefined): Promise<LinkedContent | undefined>;
  };
  /** Set where no link can be taken back (an update whose target is not named by id): why, for the refusal. */
  readonly refuse?: string;
}

/** Stored content an own link names: the reference, what Attachment.size and hash say of it, the type it was checked as. */
export interface LinkedContent {
  readonly id: string;
  readonly sha256: string;
  readonly size: number;
  readonly sha1: string;
  readonly contentType: string;
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

/** Conditional references kept per body, and their length: each is authorized as a search. */
const MAX_CONDITIONAL_REFERENCES = 64;
const MAX_CONDITIONAL_REFERENCE = 4096;
/** Members held back until their object ends: they are rewritten when its data is externalized. */
const HELD = new Set(['size', 'hash', '_data']);
/** Members whose duplicates are refused: parsers disagree on which one wins. */
const SINGLE = new Set(['data', 'contentType', 'resourceType', 'size', 'hash', '_data', 'securityContext', 'url']);
const MAX_CAPTURE = 256;

type State = ObjectState | undefined;

/**
 * The rewrite engine's write direction: reads FHIR JSON as it streams and lifts every
 * Attachment.data and Binary.data out into the BlobStore (decode → sniff → hash → store),
 * writing the resource back with `size`, `hash` and a stable reference in `_data.extension` in
 * place of the bytes. Nothing but small members is ever held in memory.
 *
 * Every attachment is checked: its declared `contentType` against the sniffed content and
 * against the allow-list of the resource that carries it. On any failure, the blobs this run
 * wrote are deleted before the error surfaces; on success the caller owns them (`blobs`) and
 * links or deletes them once the upstream has answered.
 */
export class Externalizer extends Transform implements WalkPolicy<State> {
  private readonly stored: Stored[] = [];
  private readonly out = new JsonWriter();
  private readonly walker: JsonWalker<State>;
  private sink: DataSink | undefined;
  private readonly abort = new AbortController();
  private failed = false;
  /** The top-level resource's type, once the body has been read. */
  rootType: string | undefined;
  /** The top-level resource's securityContext member as sent (any shape), once the body has been read. */
  rootSecurityContext: unknown;
  /**
   * `reference` values with a query (`Patient?identifier=x`): a server that resolves match URLs in
   * plain writes (HAPI's inline match URLs) runs each as a search for the writer; the caller
   * authorizes them as such (security/bundle.ts authorizeConditionalReference).
   */
  readonly conditionalReferences: string[] = [];

  constructor(private readonly opts: ExternalizeOptions) {
    super({ readableHighWaterMark: 64 * 1024 });
    this.walker = new JsonWalker<State>(this, {
      maxDepth: 128,
      maxKey: 1024,
      hold: { maxChars: 64 * 1024, maxDepth: 16 },
      subject: 'the body',
      forbid: { text: BLOB_EXTENSION_URL, error: injected },
      screen: SIGNED_FILE_URL_SCREEN,
      writer: this.out,
      fail: (problem, cause) => new GatewayError('BAD_REQUEST', problem, { cause }),
    });
  }

  /** What this run stored; the caller's to link or delete once the body has ended without error. */
  get blobs(): readonly ExternalizedBlob[] {
    return this.stored;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.step(() => this.walker.push(chunk), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.step(() => this.walker.end(), cb);
  }

  /** Also runs after a normal end (autoDestroy): only a run cut short, or failed, loses its blobs. */
  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (!err && this.readableEnded) {
      cb(null);
      return;
    }
    void this.cleanUp(err ?? new Error('aborted')).then(() => cb(err));
  }

  private step(walk: () => Promise<void> | undefined, cb: TransformCallback): void {
    const done = () => {
      if (this.out.chars) this.push(this.out.take());
      cb();
    };
    let pending: Promise<void> | undefined;
    try {
      pending = walk();
    } catch (err) {
      this.fail(err, cb);
      return;
    }
    if (pending) pending.then(done, (err: unknown) => this.fail(err, cb));
    else done();
  }

  private fail(err: unknown, cb: TransformCallback): void {
    // Store failures arrive as GatewayErrors already (DataSink); anything else is ours.
    const e0 = isGatewayError(err) ? err : new GatewayError('INTERNAL', 'the body could not be rewritten', { cause: err });
    // In a Bundle, the refusal names the entry it is about (as the entry-by-entry checks do).
    const entry = bundleEntryOf(this.walker.top);
    const e = entry !== undefined && e0.code !== 'INTERNAL' && e0.code !== 'STORAGE_UNAVAILABLE' ? forEntry(e0, entry) : e0;
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

  open(c: Container<State>): State {
    if (c.kind === 'array') return undefined;
    return {
      root: isResourceRoot(c),
      held: undefined,
      contentType: undefined,
      resourceType: undefined,
      data: undefined,
      attachments: undefined,
      contentBelow: false,
    };
  }

  route(parent: Container<State> | undefined, key: string | undefined, first: JsonToken): Route {
    const frame = parent?.state;
    if (!parent || !frame || key === undefined) return 'pass';
    if (SINGLE.has(key)) this.walker.once(parent, key);
    // The top-level resource's securityContext is kept (it is small) for the caller's access check.
    if (HELD.has(key) || (key === 'securityContext' && parent.depth === 1)) return 'hold';
    if (key === 'data' && (frame.root || !NOT_ATTACHMENT.has(parent.name ?? ''))) {
      // Not a string: not attachment content; the upstream judges it.
      if (first.name !== 'startString') return 'pass';
      const binary = frame.root;
      if (parent.depth > 1) this.placeable(parent);
      const minBytes = binary ? (this.opts.binaryMinBytes ?? 0) : this.opts.minBytes;
      this.sink = new DataSink({
        store: this.opts.store,
        minBytes,
        maxBytes: this.opts.maxBytes,
        signal: this.abort.signal,
        ...(this.opts.tags ? { tags: this.opts.tags } : {}),
      });
      return 'stream';
    }
    // Read (and written back in place) only when it is a string: anything else is walked like
    // any value, so attachment data inside it is still found.
    if (first.name === 'startString' && (key === 'contentType' || key === 'reference' || (key === 'resourceType' && frame.root)))
      return 'hold';
    if (first.name === 'startString' && key === 'url' && this.opts.links && !frame.root) return 'hold';
    return 'pass';
  }

  /** An attachment's `url`, held for relink: a signed file URL there is dropped or refused by the rules of `held` and `relink`. */
  screensItself(parent: Container<State> | undefined, key: string | undefined): boolean {
    return key === 'url' && parent?.state !== undefined && !parent.state.root && this.opts.links !== undefined;
  }

  held(parent: Container<State> | undefined, key: string | undefined, value: unknown): void {
    const frame = parent?.state;
    if (!parent || !frame || key === undefined) return;
    if (key === 'url') {
      // Content as a URL would pass every check data gets (type, sniffing, allow-list, budget, audit).
      if (typeof value === 'string' && /^\s*data:/i.test(value))
        throw new GatewayError('BAD_REQUEST', 'a data: URL is not accepted as a url: send the content as data, where it is checked');
      // One of our content links waits for the object's end (relink); any other URL stays in place.
      // So does a signed file URL an answer gave in its place: taken back through `_data`'s link, never stored.
      const base = this.opts.links!.base;
      if (typeof value === 'string' && (parseContentLink(base, value)?.path !== undefined || isSignedFileUrl(base, value)))
        (frame.held ??= new Map()).set(key, value);
      else if (typeof value === 'string' && holdsSignedFileUrl(value)) throw SIGNED_FILE_URL_SCREEN.error();
      else this.out.pair(parent, key, value);
      return;
    }
    if (key === 'reference') {
      this.out.pair(parent, key, value);
      if (typeof value === 'string' && value.includes('?')) this.conditionalReference(value);
      return;
    }
    if (key !== 'contentType' && key !== 'resourceType') {
      (frame.held ??= new Map()).set(key, value);
      return;
    }
    // Read and written back in place (a string: see route).
    this.out.pair(parent, key, value);
    if (typeof value !== 'string') return;
    if (value.length > MAX_CAPTURE) throw new GatewayError('BAD_REQUEST', `${key} is too long`);
    frame[key] = value;
  }

  /**
   * Where content may be placed, by data or by a link taken back (one rule for both: attacks
   * link-path-unaddressable, relink-placement-unchecked): in an attachment, not a Signature or
   * SampledData (whose `data` is never content), at a path `$binary-access-read` can name
   * (element names, each checked as a name, and depth), so a read can link to it and a link can
   * take it back. Counted from the document: a stored Bundle (a `document`) is its entries' owner,
   * the longest path there is. Content anywhere below a Binary but its own data is refused at the
   * Binary's end (finishObject: its type may come last).
   */
  private placeable(c: Container<State>): void {
    if (NOT_ATTACHMENT.has(c.name ?? ''))
      throw new GatewayError('BAD_REQUEST', `${c.name} is not an attachment: stored content cannot be placed in it`);
    let steps = 0;
    let ok = true;
    let x: Container<State> | undefined = c;
    while (ok && x?.parent) {
      const p: Container<State> = x.parent;
      if (p.kind === 'array') {
        // An item: its step is the array's name; an array in an array has none.
        ok = p.parent?.kind === 'object' && isStepName(p.key);
        x = p;
      } else ok = isStepName(x.key);
      ok &&= ++steps <= MAX_PATH_STEPS;
      x = x.parent;
    }
    if (!ok) {
      let doc = c;
      while (doc.parent) doc = doc.parent;
      throw new GatewayError(
        'BAD_REQUEST',
        `attachment data at ${pathBelow(doc, c).slice(0, 200)} is not stored: only data at a path $binary-access-read can name (element names, at most ${MAX_PATH_STEPS} steps) is accepted`,
      );
    }
  }

  /** Content was placed at `c`: every resource above it has content below it (a Binary may not). */
  private contentPlaced(c: Container<State>): void {
    for (let x = c.parent; x; x = x.parent) if (x.state?.root) x.state.contentBelow = true;
  }

  private conditionalReference(value: string): void {
    if (value.length > MAX_CONDITIONAL_REFERENCE) throw new GatewayError('BAD_REQUEST', 'a conditional reference is too long');
    if (this.conditionalReferences.length >= MAX_CONDITIONAL_REFERENCES) {
      throw new GatewayError('BAD_REQUEST', `more than ${MAX_CONDITIONAL_REFERENCES} conditional references in one body`);
    }
    this.conditionalReferences.push(value);
  }

  chunk(text: string): Promise<void> {
    return this.sink!.write(text);
  }

  async streamEnd(): Promise<void> {
    const sink = this.sink!;
    const result = await sink.end();
    this.sink = undefined;
    const top = this.walker.top!;
    top.state!.data = result;
    // Recorded at once, so that a failure from here on deletes it too.
    if (result.kind === 'blob') {
      this.stored.push({ info: result.info, contentType: 'application/octet-stream', resourceType: '', entry: bundleEntryOf(top) });
    }
  }

  /** Rewrites what the object's data needs, checks it; the walker then closes the object. */
  close(c: Container<State>): Promise<void> | undefined {
    const frame = c.state;
    if (!frame) return undefined;
    if (!frame.data) {
      const relinked = this.relink(c, frame);
      if (relinked) return relinked.then(() => this.finishObject(c, frame.held));
      this.finishObject(c, frame.held);
      return undefined;
    }
    return this.finishData(c, frame, frame.data).then(() => this.finishObject(c, undefined));
  }

  private finishObject(c: Container<State>, held: Map<string, unknown> | undefined): void {
    const frame = c.state!;
    if (held) for (const [k, v] of held) this.out.pair(c, k, v);
    if (frame.root) {
      // A Binary's content is Binary.data: nothing else below it — an extension's attachment, a
      // contained resource's — can be read back (its FHIR view and `$binary-access-read` name
      // only that), so nothing else in it is taken (attacks binary-nested-attachment-unreadable,
      // binary-contained-content).
      if (frame.resourceType === 'Binary' && frame.contentBelow)
        throw new GatewayError('BAD_REQUEST', 'a Binary carries content only in Binary.data');
      checkAllowed(frame, (rt) => this.opts.allowedTypes(rt));
    }
    if (c.depth === 1) {
      this.rootType = frame.resourceType;
      this.rootSecurityContext = frame.held?.get('securityContext');
    }
  }

  private async finishData(c: Container<State>, frame: ObjectState, result: SinkResult): Promise<void> {
    // New data beside a signed URL an answer gave: the URL (a credential for the old content) and
    // our link with its digest are dropped, never stored (review: signed-url-with-data).
    const url = frame.held?.get('url');
    if (typeof url === 'string' && this.opts.links && isSignedFileUrl(this.opts.links.base, url)) {
      frame.held!.delete('url');
      const prior = frame.held!.get('_data');
      if (prior && typeof prior === 'object' && !Array.isArray(prior)) {
        const element = prior as Record<string, unknown>;
        const extension = (Array.isArray(element['extension']) ? (element['extension'] as unknown[]) : []).filter((e) => {
          const u = (e as { url?: unknown } | null)?.url;
          return u !== CONTENT_URL_EXTENSION && u !== CONTENT_SHA256_EXTENSION;
        });
        frame.held!.set('_data', { ...element, extension });
      }
    }
    const { declared, members } = await rewrittenMembers(frame, result);
    const stored = result.kind === 'blob' ? this.stored.find((b) => b.info.id === result.info.id) : undefined;
    if (stored) stored.contentType = declared;
    ((frame.root ? frame : this.resourceOf(c)).attachments ??= []).push({ declared, stored });
    this.contentPlaced(c);
    for (const [k, v] of members) this.out.pair(c, k, v);
  }

  /**
   * An attachment without data whose `url`, or `_data` content-url extension (Binary's, and an
   * attachment whose `url` is the client's), is one of our content links. In an update of one
   * resource, its own link becomes the reference to the content its current version has at the
   * linked path, as if the data had been sent again — only for a caller who may read the type,
   * only if the content is the one the link was given for (the SHA-256 beside it, else the
   * attachment's `hash`) and only as the type it was checked as. Anything else that would leave
   * the new version without its content is refused, never stored as a link to nothing: a link in
   * a Bundle (entries' targets are not known while they stream by), in an update whose target
   * is a search, or naming another resource (its own content is not this resource's: an answer
   * that linked through a search Bundle or an operation's Bundle gives such links).
   */
  private relink(c: Container<State>, frame: ObjectState): Promise<void> | undefined {
    const links = this.opts.links;
    const held = frame.held;
    if (!links || !held) return undefined;
    const url = held.get('url');
    const signed = typeof url === 'string' && isSignedFileUrl(links.base, url);
    const target = typeof url === 'string' && !signed ? url : contentUrlOf(held.get('_data'));
    const link = target === undefined ? undefined : parseContentLink(links.base, target);
    if (signed && !link)
      throw new GatewayError(
        'CONTENT_LINK_UNRESOLVED',
        'an attachment url is a signed file URL of this gateway (a credential): it is never stored in a resource; send the data, or the resource as it was read (its _data link)',
      );
    if (!link) return undefined;
    if (bundleEntryOf(c) !== undefined)
      throw new GatewayError(
        'BAD_REQUEST',
        'an attachment links to content the gateway stores (a read answered it so): in a Bundle, send its data instead, or update the resource on its own',
      );
    if (links.refuse) throw new GatewayError('CONTENT_LINK_UNRESOLVED', links.refuse);
    const own = links.own;
    // Anything but the written resource's own link (another resource's, a search Bundle's, an
    // operation answer's) would be stored as a URL to content this resource does not hold.
    if (!own || link.owner !== own.key)
      throw new GatewayError(
        'CONTENT_LINK_UNRESOLVED',
        `an attachment links to content the gateway stores for ${link.owner}: a resource takes back only its own content by link (update ${own?.key ?? 'it'} with its own link, or send the data)`,
      );
    if (!own.mayRead)
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        `a content link is taken back only by a caller who may read ${own.key.split('/')[0]}: send the data instead`,
      );
    const where = link.path ?? 'Binary.data';
    // The same rule as data (attack relink-root-placement): at a resource's root only a Binary's own content.
    if (frame.root && frame.resourceType !== 'Binary')
      throw new GatewayError('BAD_REQUEST', 'a content link at the root of a resource is taken back only as a Binary’s data');
    if (c.depth > 1) this.placeable(c);
    return own.resolve(link.path).then((content) => {
      if (!content)
        throw new GatewayError('CONTENT_LINK_UNRESOLVED', `${own.key} has no stored content at ${where} any more: send the data instead`);
      const declared = essence(frame.contentType);
      if (declared !== essence(content.contentType))
        throw new GatewayError(
          'UNSUPPORTED_MEDIA',
          `the content at ${where} was checked as ${content.contentType}: a link takes it back only as that, not as ${declared ?? 'no type'}`,
        );
      // Which content the link was given for: the digest beside a `_data` link, else the attachment's hash.
      const sha256 = contentSha256Of(held.get('_data'));
      const size = held.get('size');
      const hash = held.get('hash');
      const same = sha256 !== undefined ? sha256 === content.sha256 : typeof hash === 'string' && hash === content.sha1;
      if (!same || (size !== undefined && size !== content.size))
        throw new GatewayError(
          'CONTENT_LINK_UNRESOLVED',
          `the content at ${where} is not the content the link was given for (or nothing sent with it says which: keep its hash): send the data instead`,
        );
      // Still a type this resource may carry (the policy may have changed since it was stored).
      ((frame.root ? frame : this.resourceOf(c)).attachments ??= []).push({ declared: declared!, stored: undefined });
      this.contentPlaced(c);
      if (!frame.root) {
        held.delete('url');
        held.set('size', content.size);
        held.set('hash', content.sha1);
      }
      const prior = held.get('_data');
      const element = prior && typeof prior === 'object' && !Array.isArray(prior) ? (prior as Record<string, unknown>) : {};
      const extension = (Array.isArray(element['extension']) ? (element['extension'] as unknown[]) : []).filter((e) => {
        const u = (e as { url?: unknown } | null)?.url;
        return u !== CONTENT_URL_EXTENSION && u !== CONTENT_SHA256_EXTENSION;
      });
      held.set('_data', { ...element, extension: [...extension, blobExtension({ id: content.id, sha256: content.sha256 })] });
    });
  }

  /** The resource an attachment sits in. */
  private resourceOf(c: Container<State>): ObjectState {
    for (let x = c.parent; x; x = x.parent) if (x.state?.root) return x.state;
    // Attachments always sit inside a resource; data in a non-resource document has no policy.
    throw new GatewayError('BAD_REQUEST', 'attachment data outside a FHIR resource');
  }
}

/** The content-url extension's value in a `_data` element, if it has one. */
function contentUrlOf(element: unknown): string | undefined {
  const v = extensionOf(element, CONTENT_URL_EXTENSION)?.valueUrl;
  return typeof v === 'string' ? v : undefined;
}

/** The content-sha256 extension's value beside it. */
function contentSha256Of(element: unknown): string | undefined {
  const v = extensionOf(element, CONTENT_SHA256_EXTENSION)?.valueString;
  return typeof v === 'string' ? v : undefined;
}

function extensionOf(element: unknown, url: string): { valueUrl?: unknown; valueString?: unknown } | undefined {
  const ext = (element as { extension?: unknown } | null | undefined)?.extension;
  if (!Array.isArray(ext)) return undefined;
  return (ext as { url?: unknown; valueUrl?: unknown; valueString?: unknown }[]).find((e) => e?.url === url);
}

function injected(): GatewayError {
  return new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only');
}
