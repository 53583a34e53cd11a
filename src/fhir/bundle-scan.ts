import { randomUUID } from 'node:crypto';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import parserStream from 'stream-json';
import { GatewayError, isGatewayError } from '../errors.js';
import { SizeLimit } from '../proxy/size-limit.js';

export interface BundleEntryRequest {
  readonly index: number;
  readonly method: string;
  readonly url: string;
  /** resource.resourceType, when the entry carries a resource. */
  readonly resourceType: string | undefined;
  /** request.ifNoneExist: makes a POST entry a conditional create, which also runs a search. */
  readonly ifNoneExist: string | undefined;
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
const MAX_KEY = 64;
const MAX_SHORT_STRING = 64;
const MAX_URL = 8192;
/** Every key the scanner reads, wherever it reads it; duplicates of these are refused. */
const READ_KEYS = new Set(['resourceType', 'type', 'entry', 'request', 'resource', 'method', 'url', 'ifNoneExist']);

interface Token {
  name: string;
  value?: string;
}

type Frame = { kind: 'object'; key: string | undefined; seen: Set<string> | undefined } | { kind: 'array'; index: number };

/**
 * Follows the token stream of a batch/transaction Bundle and keeps only what authorization
 * needs. Keys we read are refused when repeated: parsers disagree on which duplicate wins, and
 * the upstream must not act on a different entry than the one we authorized.
 */
class BundleScanner extends Writable {
  private readonly stack: Frame[] = [];
  private keyBuf = '';
  private keyTooLong = false;
  private str: string | undefined;
  private strCap = 0;
  private strTarget: 'resourceType' | 'type' | 'method' | 'url' | 'ifNoneExist' | 'entryType' | undefined;
  rootType: string | undefined;
  bundleType: string | undefined;
  private current: { method?: string; url?: string; resourceType?: string; ifNoneExist?: string } | undefined;
  readonly entries: BundleEntryRequest[] = [];

  constructor(private readonly maxEntries: number) {
    super({ objectMode: true });
  }

  override _write(tok: Token, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.token(tok);
      cb();
    } catch (err) {
      cb(err as Error);
    }
  }

  /** Where we are: the path of keys/indices from the root, for the few shapes we care about. */
  private where(): string {
    const s = this.stack;
    // root object
    if (s.length === 1) return 'root';
    if (s.length === 2 && s[0].kind === 'object' && s[0].key === 'entry' && s[1].kind === 'array') return 'entries';
    if (s.length === 3 && this.inEntries()) return 'entry';
    if (s.length === 4 && this.inEntries() && s[2].kind === 'object') {
      if (s[2].key === 'request') return 'request';
      if (s[2].key === 'resource') return 'resource';
    }
    return 'other';
  }

  private inEntries(): boolean {
    const s = this.stack;
    return s[0].kind === 'object' && s[0].key === 'entry' && s[1].kind === 'array' && s[2].kind === 'object';
  }

  private token(tok: Token): void {
    switch (tok.name) {
      case 'startObject':
      case 'startArray': {
        if (this.stack.length >= MAX_DEPTH) throw bad('nesting too deep');
        if (this.stack.length === 0 && tok.name !== 'startObject') throw bad('not a JSON object');
        const where = this.stack.length === 0 ? 'top' : this.where();
        const parent = this.stack[this.stack.length - 1];
        const parentKey = parent?.kind === 'object' ? parent.key : undefined;
        // Lenient parsers (Jackson's ACCEPT_SINGLE_VALUE_AS_ARRAY) would read a lone object as a one-entry array we never saw.
        if (where === 'root' && parentKey === 'entry' && tok.name !== 'startArray') throw bad('Bundle.entry must be an array');
        // The same leniency would read `[[entry]]` or `resource: [ {...} ]` as the object we never checked.
        if (tok.name === 'startArray' && !(where === 'root' && parentKey === 'entry')) this.mustBeObject(where, parentKey);
        if (tok.name === 'startArray') {
          this.stack.push({ kind: 'array', index: 0 });
          return;
        }
        // Duplicate keys are tracked in the objects we read: the root, each entry, entry.request/resource.
        const tracked =
          where === 'top' || where === 'entries' || (where === 'entry' && (parentKey === 'request' || parentKey === 'resource'));
        if (where === 'entries') {
          if (this.entries.length >= this.maxEntries) throw bad(`more than ${this.maxEntries} entries`);
          this.current = {};
        }
        this.stack.push({ kind: 'object', key: undefined, seen: tracked ? new Set() : undefined });
        return;
      }
      case 'endObject': {
        const where = this.where();
        this.stack.pop();
        if (where === 'entry' && this.current) {
          const c = this.current;
          if (!c.method || !c.url) throw bad(`entry ${this.entries.length} has no request.method or request.url`);
          this.entries.push({
            index: this.entries.length,
            method: c.method,
            url: c.url,
            resourceType: c.resourceType,
            ifNoneExist: c.ifNoneExist,
          });
          this.current = undefined;
        }
        this.valueEnds();
        return;
      }
      case 'endArray':
        this.stack.pop();
        this.valueEnds();
        return;
      case 'startKey':
        this.keyOpen = true;
        this.keyBuf = '';
        this.keyTooLong = false;
        return;
      case 'endKey': {
        this.keyOpen = false;
        const top = this.stack[this.stack.length - 1];
        if (!top || top.kind !== 'object') throw bad('malformed JSON');
        const key = this.keyTooLong ? '\u0000long' : this.keyBuf;
        // Only the keys we read can be used to make the upstream act on something we did not
        // check; remembering every key would let a key flood cost ~10x the body in heap.
        if (top.seen && READ_KEYS.has(key)) {
          if (top.seen.has(key)) throw bad(`duplicate key '${key}'`);
          top.seen.add(key);
        }
        top.key = key;
        return;
      }
      case 'startString':
        this.scalar();
        this.beginString();
        return;
      case 'startNumber':
        this.scalar();
        return;
      case 'stringChunk':
        if (this.keyOpen) {
          if (this.keyBuf.length + (tok.value?.length ?? 0) > MAX_KEY) this.keyTooLong = true;
          else this.keyBuf += tok.value ?? '';
          return;
        }
        if (this.str !== undefined) {
          if (this.str.length + (tok.value?.length ?? 0) > this.strCap) throw bad(`${this.strTarget} too long`);
          this.str += tok.value ?? '';
        }
        return;
      case 'endString':
        this.endString();
        this.valueEnds();
        return;
      case 'nullValue':
      case 'trueValue':
      case 'falseValue':
        this.scalar();
        this.valueEnds();
        return;
      case 'endNumber':
        this.valueEnds();
        return;
      default:
        return;
    }
  }

  private keyOpen = false;

  /** A scalar where an array or object is required (Bundle.entry, an entry, entry.request/resource) is refused. */
  private scalar(): void {
    if (this.stack.length === 0) return;
    const top = this.stack[this.stack.length - 1];
    this.mustBeObject(this.where(), top.kind === 'object' ? top.key : undefined);
  }

  private mustBeObject(where: string, key: string | undefined): void {
    if (where === 'root' && key === 'entry') throw bad('Bundle.entry must be an array');
    if (where === 'entries') throw bad(`entry ${this.entries.length} must be an object`);
    if (where === 'entry' && (key === 'request' || key === 'resource')) throw bad(`entry ${this.entries.length}: ${key} must be an object`);
  }

  private valueEnds(): void {
    const top = this.stack[this.stack.length - 1];
    if (top?.kind === 'array') top.index++;
    else if (top?.kind === 'object') top.key = undefined;
  }

  private beginString(): void {
    const top = this.stack[this.stack.length - 1];
    const key = top?.kind === 'object' ? top.key : undefined;
    const where = this.stack.length === 0 ? 'none' : this.where();
    this.strTarget = undefined;
    if (where === 'root' && (key === 'resourceType' || key === 'type')) this.strTarget = key;
    else if (where === 'request' && (key === 'method' || key === 'url' || key === 'ifNoneExist')) this.strTarget = key;
    else if (where === 'resource' && key === 'resourceType') this.strTarget = 'entryType';
    if (this.strTarget) {
      this.str = '';
      this.strCap = this.strTarget === 'url' || this.strTarget === 'ifNoneExist' ? MAX_URL : MAX_SHORT_STRING;
    } else {
      this.str = undefined;
    }
  }

  private endString(): void {
    if (this.str === undefined) return;
    const v = this.str;
    this.str = undefined;
    switch (this.strTarget) {
      case 'resourceType':
        this.rootType = v;
        break;
      case 'type':
        this.bundleType = v;
        break;
      case 'method':
        if (this.current) this.current.method = v;
        break;
      case 'url':
        if (this.current) this.current.url = v;
        break;
      case 'ifNoneExist':
        if (this.current) this.current.ifNoneExist = v;
        break;
      case 'entryType':
        if (this.current) this.current.resourceType = v;
        break;
      default:
        break;
    }
  }
}

function bad(detail: string): GatewayError {
  return new GatewayError('BAD_BUNDLE', detail);
}

/** Splits the byte stream: one copy to the spool file, one to the tokenizer, at the slower one's pace. */
class Tee extends Transform {
  /**
   * JSON is UTF-8 (RFC 8259 §8.1). The tokenizer replaces invalid sequences with U+FFFD while
   * some upstream parsers decode them (an overlong `\xC1\xAD` read as `m` makes a second
   * `method` key we never saw): refuse them.
   */
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  constructor(private readonly side: Writable) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.utf8.decode(chunk, { stream: true });
    } catch {
      cb(bad('body is not valid UTF-8'));
      return;
    }
    if (this.side.write(chunk)) cb(null, chunk);
    else this.side.once('drain', () => cb(null, chunk));
  }
  override _flush(cb: TransformCallback): void {
    try {
      this.utf8.decode();
    } catch {
      cb(bad('body is not valid UTF-8'));
      return;
    }
    this.side.end();
    cb();
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
  // Keys are streamed (not packed) so a hostile multi-megabyte key is never accumulated.
  const parser = parserStream({
    packKeys: false,
    streamKeys: true,
    packStrings: false,
    streamStrings: true,
    packNumbers: false,
    streamNumbers: true,
  });
  const scanner = new BundleScanner(opts.maxEntries);
  // Opened before reading: a spool directory we cannot write is our fault (500), not a bad body,
  // and the file exists before anything can fail (an unlink racing a lazy open would leave it behind).
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    throw new GatewayError('INTERNAL', undefined, { cause: err });
  }
  const out = handle.createWriteStream();
  const closed = new Promise<void>((resolve) => out.once('close', resolve));
  const ac = new AbortController();
  const guard = <T>(p: Promise<T>) =>
    p.catch((err: unknown) => {
      ac.abort(err);
      throw err;
    });
  try {
    await Promise.all([
      guard(pipeline(body, limit, new Tee(parser), out, { signal: ac.signal })),
      guard(pipeline(parser, scanner, { signal: ac.signal })),
    ]);
  } catch (err) {
    out.destroy();
    await closed;
    await unlink(file).catch(() => undefined);
    const cause = ac.signal.reason ?? err;
    if (isGatewayError(cause)) throw cause;
    if (isGatewayError(err)) throw err;
    throw new GatewayError('BAD_BUNDLE', 'body is not valid JSON', { cause: err });
  }
  const fail = async (detail: string): Promise<never> => {
    await unlink(file).catch(() => undefined);
    throw bad(detail);
  };
  if (scanner.rootType !== 'Bundle') return fail('resourceType must be Bundle');
  if (scanner.bundleType !== 'batch' && scanner.bundleType !== 'transaction') return fail('Bundle.type must be batch or transaction');
  return { type: scanner.bundleType, entries: scanner.entries, file, size: limit.bytes };
}
