import { createHash } from 'node:crypto';
import type { BlobInfo, BlobStore } from './blob-store.js';

/**
 * Backup verification ("scrub"): re-reads stored blobs and checks each against its record — every
 * chunk digest on the way (the driver's verified read), then the whole content's size and SHA-256,
 * which reads cannot afford to check (storage/chunks.ts). Reports what failed and why; never
 * changes the store. Run from `fhir-binary-gateway scrub` (docs/operations.md).
 */

export interface ScrubOptions {
  /** Only blobs created at or after this time. */
  readonly since?: Date;
  /** Check about this fraction of the blobs (0 < sample ≤ 1), chosen at random; 1 by default. */
  readonly sample?: number;
  /** Blobs read at once. */
  readonly concurrency?: number;
  /** Called after each blob checked (progress on a terminal). */
  onProgress?(report: ScrubReport): void;
  /** Chance source for sampling (tests make it deterministic). */
  random?(): number;
}

export interface ScrubFailure {
  readonly id: string;
  /**
   * `content`: the bytes are missing or differ from the record; `record`: the metadata record
   * cannot be read; `error`: the blob could not be checked (the store failed), no verdict on it.
   */
  readonly kind: 'content' | 'record' | 'error';
  /** Why, for the operator: never content. */
  readonly reason: string;
}

export interface ScrubReport {
  /** Blobs listed (before the since/sample filters). */
  listed: number;
  checked: number;
  ok: number;
  /** Decoded bytes read. */
  bytes: number;
  /** Blobs deleted between the listing and their read (a sweep, an admin delete): no verdict, no failure. */
  deleted: number;
  failures: ScrubFailure[];
}

export async function scrub(store: BlobStore, opts: ScrubOptions = {}): Promise<ScrubReport> {
  const report: ScrubReport = { listed: 0, checked: 0, ok: 0, bytes: 0, deleted: 0, failures: [] };
  const random = opts.random ?? Math.random;
  const sample = opts.sample ?? 1;
  const width = Math.max(1, opts.concurrency ?? 4);
  let cursor: string | undefined;
  do {
    const page = await store.list(cursor ? { cursor } : {});
    report.listed += page.items.length + (page.unreadable?.length ?? 0);
    for (const id of page.unreadable ?? []) {
      report.failures.push({ id, kind: 'record', reason: 'its metadata record cannot be read' });
    }
    const todo = page.items.filter((info) => (!opts.since || Date.parse(info.createdAt) >= opts.since.getTime()) && random() < sample);
    for (let i = 0; i < todo.length; i += width) {
      await Promise.all(
        todo.slice(i, i + width).map(async (info) => {
          const failure = await check(store, info);
          if (failure === 'deleted') {
            report.deleted++;
            return;
          }
          report.checked++;
          if (failure) report.failures.push(failure);
          else {
            report.ok++;
            report.bytes += info.size;
          }
          opts.onProgress?.(report);
        }),
      );
    }
    cursor = page.cursor;
  } while (cursor);
  return report;
}

/** One blob, read whole through the driver's verified read, against its record's size and SHA-256. */
async function check(store: BlobStore, info: BlobInfo): Promise<ScrubFailure | 'deleted' | undefined> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of (await store.get(info.id)).body) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    const why = cause instanceof Error ? cause.message : (err as Error).message;
    const code = (err as { code?: unknown }).code;
    // Gone with its record since the listing: deleted on purpose (a sweep, an admin delete), not
    // lost — reported as a failure, an operator might restore content that was meant to go.
    // A record left without its content stays a failure.
    if (code === 'BLOB_UNREADABLE' && (await store.head(info.id).catch(() => info)) === undefined) return 'deleted';
    // A digest or authentication failure is wrong content; anything else (the store down) is not a verdict on the blob.
    return { id: info.id, kind: code === 'BLOB_UNREADABLE' ? 'content' : 'error', reason: why.replace(/^blob [a-z0-9-]+: /, '') };
  }
  if (size !== info.size) return { id: info.id, kind: 'content', reason: `${size} bytes read, ${info.size} recorded` };
  if (hash.digest('hex') !== info.sha256) return { id: info.id, kind: 'content', reason: 'its SHA-256 differs from the recorded one' };
  return undefined;
}
