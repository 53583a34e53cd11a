import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { blobMissing, blobUnreadable } from './blob-store.js';
import {
  CLAIM_NAME,
  type BlobInfo,
  type BlobStore,
  type ByteRange,
  type Claim,
  type ListOptions,
  type ListPage,
  type MetaPatch,
  type PutMeta,
  type PutOptions,
} from './blob-store.js';
import { CHUNK_BYTES, verifiedRead } from './chunks.js';
import { namesIn, staleFiles } from '../lib/dir-names.js';
import { DigestStream } from './digest.js';
import { HEADER_READ_BYTES, newHeader, OpenStream, openHeader, SealStream, sealedSize, sealedSpan, type KeyRing } from './encryption.js';
import {
  checkRange,
  claimRecord,
  isBlobId,
  newBlobId,
  newInfo,
  parseClaim,
  parseMeta,
  patchInfo,
  serializeMeta,
  type DriverMeta,
} from './meta.js';

export interface FilesystemStoreOptions {
  readonly directory: string;
  /** When set, content is sealed at rest (encryption.ts); blobs written without it still read. */
  readonly encryption?: KeyRing;
}

const DEFAULT_LIST_LIMIT = 1000;
/** Where claims (storage/blob-store.ts) live: not a shard (shards are two characters), never listed as blobs. */
const CLAIMS = 'claims';

/**
 * Blobs as files: `<dir>/<id[0..2]>/<id[2..4]>/<id>.blob` with its metadata record `<id>.json`
 * beside it. Safe for a directory shared by several gateways (NFS, a shared volume): ids are
 * random, every write goes to a uniquely named temp file in the target directory (created
 * exclusively, fsynced) and is renamed into place, so a reader sees a whole file or none; the
 * record is written after the content, so a record means the content is complete.
 */
export class FilesystemBlobStore implements BlobStore {
  readonly driver = 'filesystem';
  private readonly dir: string;

  constructor(private readonly options: FilesystemStoreOptions) {
    this.dir = options.directory;
  }

  async put(body: Readable, meta: PutMeta, options: PutOptions = {}): Promise<BlobInfo> {
    const id = newBlobId();
    const shard = this.shardOf(id);
    await mkdir(shard, { recursive: true, mode: 0o700 });
    const blobTmp = tempName(shard, id, 'blob');
    const metaTmp = tempName(shard, id, 'json');
    const blobPath = join(shard, `${id}.blob`);
    let renamed = false;
    try {
      const digest = new DigestStream(options.maxBytes, options.rule);
      const sealed = this.options.encryption ? newHeader(this.options.encryption) : undefined;
      const fh = await open(blobTmp, 'wx', 0o600);
      // The stream leaves the descriptor open (autoClose: false) so it can be fsynced after the
      // last write; it holds a reference that FileHandle.close() waits for until it is destroyed.
      const out = fh.createWriteStream({ autoClose: false, start: sealed?.bytes.length ?? 0 });
      try {
        if (sealed) await fh.write(sealed.bytes, 0, sealed.bytes.length, 0);
        const stages: NodeJS.ReadWriteStream[] = [digest];
        if (sealed) stages.push(new SealStream(sealed.header));
        await pipeline([body, ...stages, out], options.signal ? { signal: options.signal } : {});
        await fh.sync();
      } finally {
        out.destroy();
        await fh.close();
      }
      const info = newInfo(id, digest.digest, meta);
      const driver: DriverMeta = sealed ? { keyId: sealed.header.keyId } : {};
      await rename(blobTmp, blobPath);
      renamed = true;
      await writeDurably(metaTmp, join(shard, `${id}.json`), serializeMeta(info, driver));
      await syncDir(shard);
      return info;
    } catch (err) {
      body.destroy();
      await Promise.all([blobTmp, metaTmp, ...(renamed ? [blobPath] : [])].map(removeQuietly));
      throw err;
    }
  }

  async get(id: string, range?: ByteRange): Promise<{ readonly info: BlobInfo; readonly body: Readable }> {
    const record = await this.read(id);
    if (!record) throw blobMissing(id);
    const { info, driver } = record;
    checkRange(range, info.size);
    const path = join(this.shardOf(id), `${id}.blob`);
    // A range of content without chunk digests is read twice (checked whole, then served): the
    // second read must be of the file the first checked, not of one renamed into place meanwhile
    // — plain or sealed alike (a sealed file of another blob opens with its own header and key).
    const twice = info.chunks === undefined && range !== undefined && (range.start > 0 || range.end < info.size - 1);
    let checked: string | undefined;
    const openFile = async (): Promise<FileHandle> => {
      // A record without its content (a partial restore, a stray delete) is a missing blob, not an I/O error.
      const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOENT' ? blobMissing(id) : err;
      });
      if (twice) {
        const st = await fh.stat();
        const identity = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.ctimeMs}:${st.size}`;
        if (checked !== undefined && identity !== checked) {
          await fh.close();
          throw blobUnreadable(`blob ${id} was replaced while it was read`);
        }
        checked = identity;
      }
      return fh;
    };
    if (driver.keyId === undefined) {
      if (info.size === 0) return { info, body: emptyStream() };
      // Opened now, not lazily: a missing file is an error of get(), before anything is answered.
      // One read per chunk: the verifier then holds one buffer per chunk, not four.
      const body = await verifiedRead(info, range, async (start, end) =>
        (await openFile()).createReadStream({ start, end, highWaterMark: CHUNK_BYTES }),
      );
      return { info, body };
    }
    // AES-GCM authenticates every sealed chunk, but only as a chunk of *some* blob sealed with our
    // keys: a file swapped for another blob's of the same size would decrypt fine. The recorded
    // chunk digests of the plaintext tie the bytes to this record.
    return { info, body: await verifiedRead(info, range, (start, end) => this.openSealed(openFile, info.size, { start, end })) };
  }

  async openPlainFile(id: string): Promise<{ readonly info: BlobInfo; readonly file: FileHandle } | undefined> {
    const record = await this.read(id);
    if (!record) throw blobMissing(id);
    // Sealed blobs are decrypted on the way; blobs without chunk digests are checked whole (get()).
    if (record.driver.keyId !== undefined || record.info.chunks === undefined) return undefined;
    return { info: record.info, file: await open(join(this.shardOf(id), `${id}.blob`), 'r') };
  }

  async head(id: string): Promise<BlobInfo | undefined> {
    return (await this.read(id))?.info;
  }

  async delete(id: string): Promise<void> {
    if (!isBlobId(id)) return;
    const shard = this.shardOf(id);
    // The record first: from then on the blob does not exist for anyone, even if unlinking the content fails.
    await removeQuietly(join(shard, `${id}.json`));
    await removeQuietly(join(shard, `${id}.blob`));
  }

  async setMeta(id: string, patch: MetaPatch): Promise<BlobInfo> {
    const record = await this.read(id);
    if (!record) throw blobMissing(id);
    const info = patchInfo(record.info, patch);
    const shard = this.shardOf(id);
    await writeDurably(tempName(shard, id, 'json'), join(shard, `${id}.json`), serializeMeta(info, record.driver));
    return info;
  }

  /**
   * Walks shards in id order, so the cursor is simply the last id returned; `from` prunes the
   * shards before it, so no record before it is read.
   */
  async list(options: ListOptions = {}): Promise<ListPage> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    const after = options.cursor ?? '';
    const from = options.from ?? '';
    // Where the walk begins: the later of the cursor and `from`.
    const start = from > after ? from : after;
    const items: BlobInfo[] = [];
    const unreadable: string[] = [];
    let last = after;
    const page = (cursor?: string): ListPage => ({ items, ...(unreadable.length ? { unreadable } : {}), ...(cursor ? { cursor } : {}) });
    for (const a of await sortedDirs(this.dir, start.slice(0, 2))) {
      for (const b of await sortedDirs(join(this.dir, a), a === start.slice(0, 2) ? start.slice(2, 4) : '')) {
        const names = (await readdir(join(this.dir, a, b))).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
        for (const name of names) {
          const id = name.slice(0, -'.json'.length);
          if (id <= after || id < from || (options.prefix && !id.startsWith(options.prefix))) continue;
          if (items.length === limit) return page(last);
          const info = await this.head(id).catch((err: unknown) => {
            if ((err as { code?: unknown }).code !== 'BLOB_UNREADABLE') throw err;
            unreadable.push(id);
            return undefined;
          });
          last = id;
          if (info) items.push(info);
        }
      }
    }
    return page();
  }

  async claim(name: string, holder: string, note?: string): Promise<boolean> {
    if (!CLAIM_NAME.test(name)) throw new Error(`not a claim name: ${name}`);
    const record = claimRecord(name, holder, note);
    const dir = join(this.dir, CLAIMS);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      // `wx`: O_CREAT|O_EXCL, atomic on local filesystems and on NFSv3+.
      const fh = await open(join(dir, `${name}.json`), 'wx', 0o600);
      try {
        await fh.writeFile(record);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  async unclaim(name: string): Promise<void> {
    if (CLAIM_NAME.test(name)) await removeQuietly(join(this.dir, CLAIMS, `${name}.json`));
  }

  async claims(): Promise<readonly Claim[]> {
    const dir = join(this.dir, CLAIMS);
    const out: Claim[] = [];
    for (const n of (await namesIn(dir)).filter((x) => x.endsWith('.json')).sort()) {
      const name = n.slice(0, -'.json'.length);
      const text = await readFile(join(dir, n), 'utf8').catch(() => undefined);
      const c = parseClaim(text, name);
      // A claim whose holder died before writing it is as old as its file.
      out.push(
        c ?? {
          name,
          holder: '(unreadable)',
          at: (await stat(join(dir, n)).catch(() => undefined))?.mtime.toISOString() ?? new Date(0).toISOString(),
        },
      );
    }
    return out;
  }

  async leftovers(before: Date, dryRun: boolean): Promise<readonly string[]> {
    const found: string[] = [];
    for (const a of await sortedDirs(this.dir, '')) {
      for (const b of await sortedDirs(join(this.dir, a), '')) {
        // Temp files of a put or setMeta (tempName): `.{id}.{random}.{blob|json}.tmp`.
        const temp = (n: string) => n.startsWith('.') && n.endsWith('.tmp');
        for (const name of await staleFiles(join(this.dir, a, b), temp, before, dryRun)) found.push(join(a, b, name));
      }
    }
    return found;
  }

  private shardOf(id: string): string {
    return join(this.dir, id.slice(0, 2), id.slice(2, 4));
  }

  private async read(id: string): Promise<{ info: BlobInfo; driver: DriverMeta } | undefined> {
    if (!isBlobId(id) || id.length < 4) return undefined;
    let text: string;
    try {
      text = await readFile(join(this.shardOf(id), `${id}.json`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseMeta(text, id);
  }

  /**
   * A sealed blob's bytes `range`, decrypted: its header and its chunks read through one open file
   * (never the path twice: the header of one file and the chunks of another).
   */
  private async openSealed(openFile: () => Promise<FileHandle>, size: number, range: ByteRange | undefined): Promise<Readable> {
    const ring = this.options.encryption;
    if (!ring) throw blobUnreadable('blob is encrypted and no encryption keys are configured');
    const fh = await openFile();
    let header;
    try {
      const buf = Buffer.alloc(HEADER_READ_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      header = openHeader(buf.subarray(0, bytesRead), ring);
      // A file of the wrong length has been truncated or appended to: refuse before streaming.
      if ((await fh.stat()).size !== sealedSize(header, size)) throw blobUnreadable('encrypted blob has the wrong length');
    } catch (err) {
      await fh.close();
      throw err;
    }
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const span = sealedSpan(header, size, start, Math.max(end, start));
    const out = new OpenStream(header, size, start, end);
    // Closes the handle when it ends, fails or is destroyed.
    const file = fh.createReadStream({ start: span.from, end: span.to });
    file.on('error', (err) => out.destroy(err));
    return file.pipe(out);
  }
}

function tempName(dir: string, id: string, ext: string): string {
  return join(dir, `.${id}.${randomBytes(6).toString('hex')}.${ext}.tmp`);
}

async function writeDurably(tmp: string, final: string, text: string): Promise<void> {
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, final);
}

/** The rename is durable only once the directory entry is. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

async function sortedDirs(dir: string, from: string): Promise<string[]> {
  const out: string[] = [];
  for (const n of (await namesIn(dir)).sort()) {
    if (n.length === 2 && n >= from && /^[a-z0-9-]{2}$/.test(n) && (await stat(join(dir, n))).isDirectory()) out.push(n);
  }
  return out;
}

function emptyStream(): Readable {
  const s = new PassThrough();
  s.end();
  return s;
}
