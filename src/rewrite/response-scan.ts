import { createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { JsonToken } from '../json/tokenizer.js';
import { WalkThrough } from '../json/walk-through.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';

/** What a batch/transaction-response says about one entry. */
export interface EntryOutcome {
  readonly status: string | undefined;
  readonly location: string | undefined;
}

const MAX_VALUE = 8192;

/**
 * Spools a batch/transaction-response Bundle to `file` while reading each
 * `entry[i].response.status` and `.location` (nothing else is kept). The caller settles the
 * blobs of each entry from these and then relays the spooled response as it came. A response
 * that is not JSON, or not a Bundle, yields no entries; the spool is still complete.
 */
export async function spoolBundleResponse(
  body: Readable,
  file: string,
): Promise<{ readonly entries: readonly EntryOutcome[]; readonly size: number }> {
  const scan = new ResponseScan();
  // A response the scan cannot read is still relayed as it came; it only yields no entries.
  const through = new WalkThrough(new JsonWalker(scan, scanWalk), { tolerant: true, onBroken: () => (scan.entries.length = 0) });
  const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
  try {
    await pipeline(body, through, out);
  } catch (err) {
    await unlink(file).catch(() => undefined);
    throw err;
  }
  return { entries: scan.entries, size: out.bytesWritten };
}

/** Containers are marked `entry` (an item of the top-level entry array) or `response` (its response). */
type Mark = 'entry' | 'response' | undefined;

const scanWalk = {
  // The upstream's answer, relayed as it came whatever it is: only what the scan reads is bounded.
  maxDepth: 1000,
  maxKey: 64,
  longKeys: 'cut' as const,
  hold: { maxChars: 0, maxDepth: 0 },
  subject: 'the response',
  fail: (problem: string) => new Error(problem),
};

class ResponseScan implements WalkPolicy<Mark> {
  readonly entries: { status: string | undefined; location: string | undefined }[] = [];

  open(c: Container<Mark>): Mark {
    const p = c.parent;
    // entry[i]: an object item of the array `entry` of the top-level object.
    if (c.kind === 'object' && p?.kind === 'array' && p.key === 'entry' && p.depth === 2) {
      this.entries.push({ status: undefined, location: undefined });
      return 'entry';
    }
    return p?.state === 'entry' && c.key === 'response' ? 'response' : undefined;
  }

  /** `entry[i].response.status` / `.location` being read, kept to MAX_VALUE characters. */
  private reading: { field: 'status' | 'location'; value: string } | undefined;

  route(parent: Container<Mark> | undefined, key: string | undefined, first: JsonToken): Route {
    if (parent?.state !== 'response' || (key !== 'status' && key !== 'location') || first.name !== 'startString') return 'pass';
    this.reading = { field: key, value: '' };
    return 'stream';
  }

  chunk(text: string): void {
    const r = this.reading!;
    if (r.value.length < MAX_VALUE) r.value = (r.value + text).slice(0, MAX_VALUE);
  }

  streamEnd(): void {
    const entry = this.entries[this.entries.length - 1];
    if (entry) entry[this.reading!.field] = this.reading!.value;
    this.reading = undefined;
  }
}
