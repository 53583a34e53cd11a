import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { JsonTokenizer, type JsonToken } from './json-tokens.js';

/** What a batch/transaction-response says about one entry. */
export interface EntryOutcome {
  readonly status: string | undefined;
  readonly location: string | undefined;
}

const MAX_VALUE = 8192;

/**
 * Spools a batch/transaction-response Bundle to `file` while reading, token by token, each
 * `entry[i].response.status` and `.location` (nothing else is kept). The caller settles the
 * blobs of each entry from these and then relays the spooled response as it came.
 * A response that is not JSON, or not a Bundle, yields no entries; the spool is still complete.
 */
export async function spoolBundleResponse(
  body: Readable,
  file: string,
): Promise<{ readonly entries: readonly EntryOutcome[]; readonly size: number }> {
  const scan = new ResponseScan();
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  try {
    await pipeline(body, scan, out);
  } catch (err) {
    await unlink(file).catch(() => undefined);
    throw err;
  }
  return { entries: scan.entries, size: out.bytesWritten };
}

type Frame = { readonly kind: 'object' | 'array'; readonly key: string | undefined };

class ResponseScan extends Transform {
  readonly entries: { status: string | undefined; location: string | undefined }[] = [];
  private readonly tokens = new JsonTokenizer();
  private readonly stack: Frame[] = [];
  private key: string | undefined;
  private keyText: string | undefined;
  private text: { field: 'status' | 'location'; value: string } | undefined;
  /** Once the body is not what we can read, we only pass it on. */
  private broken = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.broken) {
      try {
        for (const t of this.tokens.push(chunk)) this.token(t);
      } catch {
        this.broken = true;
        this.entries.length = 0;
      }
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (!this.broken) {
      try {
        this.tokens.end();
      } catch {
        this.entries.length = 0;
      }
    }
    cb();
  }

  /** Where a value now starting sits: `entry[i].response.<field>` is all we care about. */
  private field(): 'status' | 'location' | undefined {
    const s = this.stack;
    if (s.length !== 4 || (this.key !== 'status' && this.key !== 'location')) return undefined;
    return s[1].kind === 'array' && s[1].key === 'entry' && s[2].kind === 'object' && s[3].key === 'response' ? this.key : undefined;
  }

  private token(t: JsonToken): void {
    if (this.keyText !== undefined) {
      if (t.name === 'stringChunk') this.keyText = (this.keyText + t.value).slice(0, 64);
      else {
        this.key = this.keyText;
        this.keyText = undefined;
      }
      return;
    }
    switch (t.name) {
      case 'startKey':
        this.keyText = '';
        return;
      case 'startObject':
      case 'startArray': {
        const parent = this.stack[this.stack.length - 1];
        const key = parent?.kind === 'array' ? parent.key : this.key;
        // A new item of the top-level entry array.
        if (t.name === 'startObject' && this.stack.length === 2 && parent?.kind === 'array' && parent.key === 'entry')
          this.entries.push({ status: undefined, location: undefined });
        this.stack.push({ kind: t.name === 'startObject' ? 'object' : 'array', key });
        return;
      }
      case 'endObject':
      case 'endArray':
        this.stack.pop();
        return;
      case 'startString': {
        const field = this.field();
        if (field) this.text = { field, value: '' };
        return;
      }
      case 'stringChunk':
        if (this.text && this.text.value.length < MAX_VALUE) this.text.value += t.value;
        return;
      case 'endString':
        if (this.text) {
          const entry = this.entries[this.entries.length - 1];
          if (entry) entry[this.text.field] = this.text.value;
          this.text = undefined;
        }
        return;
      default:
        return;
    }
  }
}
