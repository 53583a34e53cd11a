import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import { decodedSize } from '../lib/base64.js';
import { SizeLimit } from '../lib/size-limit.js';
import { NOT_ATTACHMENT } from './attachment-kinds.js';
import type { JsonToken } from '../json/tokenizer.js';
import { WalkThrough } from '../json/walk-through.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';

export interface BundleEntryRequest {
  readonly index: number;
  readonly method: string;
  readonly url: string;
  /** resource.resourceType, when the entry carries a resource. */
  readonly resourceType: string | undefined;
  /** request.ifNoneExist: makes a POST entry a conditional create, which also runs a search. */
  readonly ifNoneExist: string | undefined;
  /** Conditional references in the entry's resource (`Patient?identifier=x`): searches the server runs to resolve them. */
  readonly conditionalReferences?: readonly string[];
  /** Decoded bytes of the largest attachment `data` in the entry's resource (absent when none). */
  readonly largestData?: number;
}

export interface ScannedBundle {
  readonly type: 'batch' | 'transaction';
  readonly entries: readonly BundleEntryRequest[];
  /** The body as received, spooled to a private file; the caller streams it on and removes it. */
  readonly file: string;
  readonly size: number;
}

export interface ScanOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxEntries: number;
}

/** Past these, nothing a FHIR Bundle needs lives: refuse instead of accumulating. */
const MAX_DEPTH = 100;
const MAX_SHORT_STRING = 64;
const MAX_URL = 8192;
/** Every key the scanner reads, wherever it reads it; duplicates of these are refused. */
const READ_KEYS = new Set(['resourceType', 'type', 'entry', 'request', 'resource', 'method', 'url', 'ifNoneExist']);

/** Where a container sits, for the few places the scanner reads; `inResource`: anywhere below an entry's resource. */
type Place = 'root' | 'entries' | 'entry' | 'request' | 'resource' | 'inResource' | 'other';
/** Conditional references one entry may carry: each is a search to authorize. */
const MAX_CONDITIONAL_REFERENCES = 100;

interface Entry {
  method?: string;
  url?: string;
  resourceType?: string;
  ifNoneExist?: string;
  hasResource?: boolean;
  conditionalReferences?: string[];
  largestData?: number;
}

/** Entry methods that carry no body (R4 http.html): a resource on one is refused, not stored. */
const BODYLESS = new Set(['GET', 'HEAD', 'DELETE']);

function bad(detail: string): GatewayError {
  return new GatewayError('BAD_BUNDLE', detail);
}

/**
 * Reads a batch/transaction Bundle as it streams and keeps only what authorization needs: the
 * root resourceType and type, and each entry's request method, url and ifNoneExist and its
 * resource's type. Keys it reads are refused when repeated (parsers disagree on which duplicate
 * wins, and the upstream must not act on another entry than the one authorized), and so are
 * arrays where an object must be (lenient parsers read `[{…}]` as the object we never checked).
 */
class BundleScan implements WalkPolicy<Place> {
  readonly walker: JsonWalker<Place>;
  /** The attachment `data` being counted: its characters and last two (for padding). */
  private dataChars = 0;
  private dataTail = '';
  rootType: string | undefined;
  bundleType: string | undefined;
  readonly entries: BundleEntryRequest[] = [];
  private current: Entry | undefined;

  constructor(private readonly maxEntries: number) {
    this.walker = new JsonWalker(this, {
      maxDepth: MAX_DEPTH,
      maxKey: 1024,
      // Keys the scan does not read may be anything the upstream accepts.
      longKeys: 'cut',
      hold: { maxChars: MAX_URL + 256, maxDepth: 4 },
      subject: 'the Bundle',
      fail: (problem) => bad(problem),
    });
  }

  open(c: Container<Place>): Place {
    const p = c.parent;
    if (!p) return 'root';
    if (p.state === 'root' && c.key === 'entry') return 'entries';
    if (p.state === 'entries') {
      if (c.kind !== 'object') throw bad(`entry ${c.index} must be an object`);
      if (this.entries.length >= this.maxEntries) throw bad(`more than ${this.maxEntries} entries`);
      this.current = {};
      return 'entry';
    }
    if (p.state === 'entry' && c.key === 'resource') this.current!.hasResource = true;
    if (p.state === 'entry' && (c.key === 'request' || c.key === 'resource')) return c.key;
    if (p.state === 'resource' || p.state === 'inResource') return 'inResource';
    return 'other';
  }

  route(parent: Container<Place> | undefined, key: string | undefined, first: JsonToken): Route {
    if (!parent) {
      if (first.name === 'startArray') throw bad('not a JSON object');
      return 'pass';
    }
    const place = parent.state;
    if (key !== undefined && place !== 'other' && place !== 'inResource' && READ_KEYS.has(key)) this.walker.once(parent, key);
    const container = first.name === 'startObject' || first.name === 'startArray';
    if (place === 'root' && key === 'entry' && first.name !== 'startArray') throw bad('Bundle.entry must be an array');
    if (place === 'entries' && first.name !== 'startObject') throw bad(`entry ${parent.items - 1} must be an object`);
    if (place === 'entry' && (key === 'request' || key === 'resource') && first.name !== 'startObject') {
      throw bad(`entry ${this.entries.length}: ${key} must be an object`);
    }
    if (container) return 'pass';
    // Attachment data is counted as it streams (never held): only writes may carry large data.
    if (
      key === 'data' &&
      first.name === 'startString' &&
      (place === 'resource' || place === 'inResource') &&
      !NOT_ATTACHMENT.has(parent.name ?? '')
    ) {
      this.dataChars = 0;
      this.dataTail = '';
      return 'stream';
    }
    return this.target(place, key) ? 'hold' : 'pass';
  }

  /** Whether the value under `key` in a `place` is one of the strings read. */
  private target(place: Place, key: string | undefined): boolean {
    if (place === 'root') return key === 'resourceType' || key === 'type';
    if (place === 'request') return key === 'method' || key === 'url' || key === 'ifNoneExist';
    // Every Reference.reference below the resource: a conditional one is a search (read in held()).
    if (key === 'reference') return place === 'resource' || place === 'inResource';
    return place === 'resource' && key === 'resourceType';
  }

  held(parent: Container<Place> | undefined, key: string | undefined, value: unknown): void {
    // Only strings say anything; a number or null where a string belongs reads as absent.
    if (typeof value !== 'string' || !parent || key === undefined) return;
    const place = parent.state;
    if (key === 'reference' && (place === 'resource' || place === 'inResource')) {
      this.reference(value);
      return;
    }
    const long = key === 'url' || key === 'ifNoneExist' ? MAX_URL : MAX_SHORT_STRING;
    if (value.length > long) throw bad(`${key} too long`);
    if (place === 'root') {
      if (key === 'resourceType') this.rootType = value;
      else this.bundleType = value;
    } else if (place === 'resource') this.current!.resourceType = value;
    else if (key === 'method' || key === 'url' || key === 'ifNoneExist') this.current![key] = value;
  }

  chunk(text: string): void {
    this.dataChars += text.length;
    this.dataTail = (this.dataTail + text).slice(-2);
  }

  streamEnd(): void {
    const e = this.current!;
    e.largestData = Math.max(e.largestData ?? 0, decodedSize(this.dataChars, this.dataTail));
  }

  /** A conditional reference (R4 http.html, transaction: `Patient?identifier=x`) is kept, to be authorized as the search it is. */
  private reference(value: string): void {
    if (!value.includes('?')) return;
    const index = this.entries.length;
    if (value.length > MAX_URL) throw bad(`entry ${index}: a conditional reference is too long`);
    const refs = (this.current!.conditionalReferences ??= []);
    if (refs.length >= MAX_CONDITIONAL_REFERENCES)
      throw bad(`entry ${index}: more than ${MAX_CONDITIONAL_REFERENCES} conditional references`);
    refs.push(value);
  }

  close(c: Container<Place>): void {
    if (c.state !== 'entry') return;
    const e = this.current!;
    const index = this.entries.length;
    if (!e.method || !e.url) throw bad(`entry ${index} has no request.method or request.url`);
    // The write direction would lift its attachment data into the store and mark it linked with
    // no owner (the upstream answers a GET entry with some other resource): a read-only token
    // could fill the store. Refused while scanning, before anything is externalized.
    if (e.hasResource && BODYLESS.has(e.method)) {
      throw bad(`entry ${index}: a ${e.method} entry must not carry a resource (Bundle.entry[${index}].resource)`);
    }
    this.entries.push({
      index,
      method: e.method,
      url: e.url,
      resourceType: e.resourceType,
      ifNoneExist: e.ifNoneExist,
      ...(e.conditionalReferences ? { conditionalReferences: e.conditionalReferences } : {}),
      ...(e.largestData ? { largestData: e.largestData } : {}),
    });
    this.current = undefined;
  }
}

/**
 * JSON is UTF-8 (RFC 8259 §8.1). The tokenizer replaces invalid sequences with U+FFFD while some
 * upstream parsers decode them (an overlong `\xC1\xAD` read as `m` makes a second `method` key we
 * never saw): refused before the scan reads them.
 */
class Utf8Only extends Transform {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    cb(
      this.check(() => this.utf8.decode(chunk, { stream: true })),
      chunk,
    );
  }
  override _flush(cb: TransformCallback): void {
    cb(this.check(() => this.utf8.decode()));
  }
  private check(decode: () => unknown): GatewayError | null {
    try {
      decode();
      return null;
    } catch {
      return bad('the Bundle is not valid UTF-8');
    }
  }
}

/**
 * Spools a batch/transaction body to disk while reading which interactions its entries ask for.
 * The upstream only ever receives the spooled copy, after every entry was authorized, so what
 * it executes is exactly what was checked. On any failure the spool file is removed.
 */
export async function spoolAndScanBundle(body: Readable, opts: ScanOptions): Promise<ScannedBundle> {
  const file = join(opts.dir, `fbg-bundle-${randomUUID()}.json`);
  const limit = new SizeLimit(opts.maxBytes);
  const scan = new BundleScan(opts.maxEntries);
  // Opened before reading: a spool directory we cannot write is our fault (500), not a bad body,
  // and the file exists before anything can fail (an unlink racing a lazy open would leave it behind).
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    throw new GatewayError('INTERNAL', undefined, { cause: err });
  }
  const out = handle.createWriteStream();
  try {
    await pipeline(body, limit, new Utf8Only(), new WalkThrough(scan.walker), out);
  } catch (err) {
    out.destroy();
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    await unlink(file).catch(() => undefined);
    if (isGatewayError(err)) throw err;
    throw new GatewayError('BAD_BUNDLE', 'the Bundle could not be read', { cause: err });
  }
  const fail = async (detail: string): Promise<never> => {
    await unlink(file).catch(() => undefined);
    throw bad(detail);
  };
  if (scan.rootType !== 'Bundle') return fail('resourceType must be Bundle');
  if (scan.bundleType !== 'batch' && scan.bundleType !== 'transaction') return fail('Bundle.type must be batch or transaction');
  return { type: scan.bundleType, entries: scan.entries, file, size: limit.bytes };
}
