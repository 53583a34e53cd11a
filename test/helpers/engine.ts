// Both directions of the rewrite engine over a real filesystem store, with inputs cut into chosen pieces.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Test } from 'tap';
import { Externalizer, type ExternalizeOptions } from '../../src/rewrite/externalize.js';
import { Inflater, type InflateOptions, type InflateReport } from '../../src/rewrite/inflate.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';

export const PUBLIC = 'https://gw.example/fhir';
export const UPSTREAM = 'http://upstream.internal:8080/fhir';

/** Cuts `buf` into pieces: a fixed size, or sizes drawn from `sizes` in turn. */
export function pieces(buf: Buffer, sizes: number | readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  const list = typeof sizes === 'number' ? [sizes] : sizes;
  for (let i = 0, k = 0; i < buf.length; k++) {
    const n = Math.max(1, list[k % list.length]);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

export interface Engine {
  readonly store: FilesystemBlobStore;
  readonly dir: string;
  /** Files in the store and in the spool directory. */
  files(): string[];
  spooled(): string[];
  externalize(
    body: string,
    opts?: Partial<ExternalizeOptions>,
    cut?: number | readonly number[],
  ): Promise<{ text: string; ext: Externalizer }>;
  /** Marks every blob the externalizer stored as linked to `owner`, as the plane does once the upstream accepted. */
  link(ext: Externalizer, owner: string): Promise<void>;
  inflate(
    body: string,
    opts?: Partial<InflateOptions>,
    cut?: number | readonly number[],
  ): Promise<{ text: string; report: InflateReport; warnings: string[] }>;
}

export function engine(t: Test): Engine {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-engine-'));
  const spool = join(dir, 'spool');
  const blobs = join(dir, 'blobs');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: blobs });
  const list = (d: string) => {
    try {
      return (readdirSync(d, { recursive: true }) as string[]).filter((p) => statSync(join(d, p)).isFile());
    } catch {
      return [];
    }
  };
  mkdirSync(spool);
  return {
    store,
    dir,
    files: () => list(blobs),
    spooled: () => list(spool),
    async externalize(body, opts = {}, cut = 65536) {
      const ext = new Externalizer({
        store,
        minBytes: 1024,
        maxBytes: 512 * 1024 * 1024,
        allowedTypes: () => ['application/*', 'text/*', 'image/*', 'audio/*', 'video/*'],
        ...opts,
      });
      const out: Buffer[] = [];
      await pipeline(Readable.from(pieces(Buffer.from(body), cut)), ext, async function* (src) {
        for await (const c of src) out.push(Buffer.from(c as Buffer));
      });
      return { text: Buffer.concat(out).toString('utf8'), ext };
    },
    async link(ext, owner) {
      for (const b of ext.blobs) await store.setMeta(b.info.id, { state: 'linked', owner, contentType: b.contentType });
    },
    async inflate(body, opts = {}, cut = 65536) {
      const warnings: string[] = [];
      const inf = new Inflater({
        store,
        maxBytes: Number.MAX_SAFE_INTEGER,
        inflate: true,
        // Bundle types lead in these inputs: ownership by type is the general case.
        owners: 'by-type',
        spoolDir: spool,
        link: (owner, path) => `${PUBLIC}/${owner}${path === undefined ? '' : `/$binary-access-read?path=${encodeURIComponent(path)}`}`,
        publicUrl: (u) => (u.startsWith(UPSTREAM) ? PUBLIC + u.slice(UPSTREAM.length) : u),
        warn: (w) => warnings.push(w),
        ...opts,
      });
      const out: string[] = [];
      await pipeline(
        Readable.from(pieces(Buffer.from(body), cut)),
        (src) => inf.run(src),
        async function* (src) {
          for await (const c of src) out.push(String(c));
        },
      );
      return { text: out.join(''), report: inf.report, warnings };
    },
  };
}
