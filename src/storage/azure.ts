import { Readable, pipeline } from 'node:stream';
import ipaddr from 'ipaddr.js';
import { text } from 'node:stream/consumers';
import {
  BlobSASPermissions,
  BlobServiceClient,
  ContainerClient,
  RestError,
  SASProtocol,
  StorageSharedKeyCredential,
  type BlobRequestConditions,
  type BlockBlobClient,
  type StoragePipelineOptions,
} from '@azure/storage-blob';
import { blobMissing, blobUnreadable, CLAIM_NAME } from './blob-store.js';
import type {
  BlobInfo,
  BlobStore,
  ByteRange,
  Claim,
  ListOptions,
  ListPage,
  MetaPatch,
  PutMeta,
  PutOptions,
  StoreUrlGap,
  StoreUrlRequest,
} from './blob-store.js';
import { GatewayError } from '../errors/catalogue.js';
import { parseSpan } from '../lib/ip.js';
import { verifiedRead } from './chunks.js';
import { DigestStream } from './digest.js';
import { abortError, finishPut } from './put.js';
import {
  checkRange,
  claimRecord,
  isBlobId,
  newBlobId,
  parseClaim,
  parseMeta,
  patchInfo,
  readRecords,
  serializeMeta,
  type DriverMeta,
} from './meta.js';

export interface AzureStoreOptions {
  container: string;
  /** Prepended to every blob name, e.g. `gateway/`, to share a container. */
  prefix?: string;
  connectionString?: string;
  accountName?: string;
  accountKey?: string;
  /** Account or container URL: the endpoint for accountKey, or the SAS URL (with `sasToken` or its own query). */
  url?: string;
  sasToken?: string;
  blockSizeBytes?: number;
  concurrency?: number;
}

/** Memory per put is about `(concurrency + 1) × block size`. */
const DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024;
const DEFAULT_CONCURRENCY = 2;
/** Every listed item costs one record read, done in parallel, so pages stay small. */
const MAX_PAGE = 100;
/** Read-patch-write rounds before setMeta gives up under contention. */
const SET_META_ATTEMPTS = 5;
/**
 * A client waits on every call. The SDK's default (4 tries, 0 + 4 + 12 s apart) holds each call
 * 16 s against an unreachable store, and a failed put makes four (the upload, then three cleanup
 * calls): over a minute before the client heard 503. Three tries, 0 + 0.5 s apart, as the S3
 * SDK's standard mode does, still ride out a dropped connection or a brief 500/503.
 */
const PIPELINE: StoragePipelineOptions = { retryOptions: { maxTries: 3, retryDelayInMs: 500, maxRetryDelayInMs: 2000 } };

/** Blob content in Azure Blob Storage, with the shared metadata record as a JSON blob beside it. */
export class AzureBlobStore implements BlobStore {
  readonly driver = 'azure';
  private readonly container: ContainerClient;
  private readonly prefix: string;
  // Only what put needs, not the options: they hold the credentials.
  private readonly blockSize: number;
  private readonly concurrency: number;

  /**
   * Blob SASes, as the seed's `generate_secure_sas` makes them: read permission, start and expiry,
   * HTTPS only (unless the rule lets plain HTTP in), the client's IPv4 range (`sip`), the answer's
   * Content-Type and Content-Disposition (`rsct`/`rscd`), and the stored access policy on the
   * container (`si`) the URL is signed under, which holds its permission: removing the policy
   * revokes every SAS under it. Only with the account key (a SAS-token credential cannot sign
   * one). Azurite, the emulator, does not check `sip`. A quarantine does not reach a SAS already
   * signed (the `withdraw` gap).
   */
  readonly readUrls?: { readonly gaps: ReadonlySet<StoreUrlGap>; readonly maxWindowMs: number };

  constructor(options: AzureStoreOptions) {
    this.container = containerClient(options);
    this.prefix = options.prefix ?? '';
    this.blockSize = options.blockSizeBytes ?? DEFAULT_BLOCK_SIZE;
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
    if (this.container.credential instanceof StorageSharedKeyCredential)
      this.readUrls = { gaps: new Set<StoreUrlGap>(['withdraw']), maxWindowMs: 365 * 24 * 3_600_000 };
  }

  async readUrl(id: string, r: StoreUrlRequest): Promise<string> {
    return this.content(id).generateSasUrl({
      // Under a stored policy the permission is the policy's (Azure refuses a field set in both).
      ...(r.policy !== undefined ? { identifier: r.policy } : { permissions: BlobSASPermissions.parse('r') }),
      startsOn: r.startsAt,
      expiresOn: r.expiresAt,
      protocol: r.httpsOnly ? SASProtocol.Https : SASProtocol.HttpsAndHttp,
      ...(r.sip !== undefined ? { ipRange: sasIpRange(r.sip) } : {}),
      ...(r.contentType ? { contentType: r.contentType } : {}),
      ...(r.disposition ? { contentDisposition: r.disposition } : {}),
      ...(r.cacheControl ? { cacheControl: r.cacheControl } : {}),
    });
  }

  /**
   * The container's signed identifiers become the gateway's policies (at most five, Azure's
   * limit), each with only its permission: start and expiry stay per URL. The container stays
   * private (no public access level).
   */
  async syncUrlPolicies(policies: readonly { readonly id: string; readonly permissions: string }[]): Promise<void> {
    await this.container.setAccessPolicy(
      undefined,
      policies.map((p) => ({ id: p.id, accessPolicy: { permissions: p.permissions.includes('w') ? 'rw' : 'r' } })),
    );
  }

  async put(body: Readable, meta: PutMeta, options: PutOptions = {}): Promise<BlobInfo> {
    const { signal } = options;
    const id = newBlobId();
    const content = this.content(id);
    const staging = trackStaging(content);
    const digest = new DigestStream(options.maxBytes, options.rule);
    // uploadStream may attach its listeners after an early failure was emitted, and then waits
    // forever; the pipeline's own outcome is what tells us the input failed.
    const streamed = new Promise<void>((resolve, reject) => pipeline(body, digest, (err) => (err ? reject(err) : resolve())));
    const onAbort = (): void => void digest.destroy(abortError(signal));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    try {
      // No abortSignal for the SDK: a request abandoned in flight may still land after our cleanup.
      // Abort reaches the upload through the stream instead, and is checked between requests.
      const upload = content.uploadStream(digest, this.blockSize, this.concurrency, {
        blobHTTPHeaders: { blobContentType: meta.contentType },
      });
      await Promise.all([streamed, upload]);
      return await finishPut(id, digest.digest, meta, signal, (info) => this.writeRecord(info, {}));
    } catch (err) {
      digest.destroy();
      await this.discard(id, staging);
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async get(id: string, range?: ByteRange): Promise<{ readonly info: BlobInfo; readonly body: Readable }> {
    const info = (await this.readRecord(id))?.info;
    if (!info) throw blobMissing(id);
    checkRange(range, info.size);
    if (info.size === 0) return { info, body: Readable.from([]) };
    // Every read of one get() is of the blob the first one read (a range of content without chunk
    // digests is read twice: checked whole, then served): one replaced meanwhile fails its condition.
    const pin: { etag?: string } = {};
    return { info, body: await verifiedRead(info, range, (start, end) => this.fetch(id, start, end, pin)) };
  }

  /** Bytes `start`..`end` (inclusive) of the content. */
  private async fetch(id: string, start: number, end: number, pin: { etag?: string } = {}): Promise<Readable> {
    try {
      const res = await this.content(id).download(start, end - start + 1, pin.etag ? { conditions: { ifMatch: pin.etag } } : {});
      const body = nodeReadable(res.readableStreamBody);
      if (pin.etag !== undefined && res.etag !== pin.etag) {
        body.destroy();
        throw blobUnreadable(`blob ${id} was replaced while it was read`);
      }
      pin.etag ??= res.etag;
      return body;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 412) throw blobUnreadable(`blob ${id} was replaced while it was read`);
      throw isNotFound(err) ? blobMissing(id) : err;
    }
  }

  async head(id: string): Promise<BlobInfo | undefined> {
    return (await this.readRecord(id))?.info;
  }

  async delete(id: string): Promise<void> {
    if (!isBlobId(id)) return;
    // Record last: a delete that fails midway leaves the blob visible to head, list and the
    // retention sweeper, so it gets retried instead of leaving content nobody can find.
    await this.content(id).deleteIfExists();
    await this.record(id).deleteIfExists();
  }

  async list(options: ListOptions = {}): Promise<ListPage> {
    const idPrefix = options.prefix ?? '';
    if (!/^[a-z0-9-]*$/.test(idPrefix)) return { items: [] };
    const base = `${this.prefix}meta/`;
    const maxPageSize = Math.min(Math.max(1, options.limit ?? MAX_PAGE), MAX_PAGE);
    const pages = this.container.listBlobsFlat({ prefix: base + idPrefix }).byPage({ maxPageSize, continuationToken: options.cursor });
    for await (const page of pages) {
      const ids = page.segment.blobItems.flatMap(({ name }) => {
        const id = name.slice(base.length, -'.json'.length);
        // Before `from`: listed by name only (Azure's `startFrom` needs a service version not every account has).
        return isBlobId(id) && name === `${base}${id}.json` && (options.from === undefined || id >= options.from) ? [id] : [];
      });
      const { items, unreadable } = await readRecords(ids, (id) => this.readRecord(id));
      return { items, ...(unreadable.length ? { unreadable } : {}), ...(page.continuationToken ? { cursor: page.continuationToken } : {}) };
    }
    return { items: [] };
  }

  /**
   * Read, patch, write with If-Match on the record's ETag, retried on a conflict: two gateways
   * patching one blob must not undo each other, and a record deleted meanwhile must not come back.
   */
  async setMeta(id: string, patch: MetaPatch): Promise<BlobInfo> {
    for (let attempt = 1; ; attempt++) {
      const record = await this.readRecord(id);
      if (!record) throw blobMissing(id);
      const info = patchInfo(record.info, patch);
      try {
        await this.writeRecord(info, record.driver, { ifMatch: record.etag });
        return info;
      } catch (err) {
        if (isNotFound(err)) throw blobMissing(id);
        if (!(err instanceof RestError && err.statusCode === 412) || attempt >= SET_META_ATTEMPTS) throw err;
      }
    }
  }

  async claim(name: string, holder: string, note?: string): Promise<boolean> {
    if (!CLAIM_NAME.test(name)) throw new Error(`not a claim name: ${name}`);
    const json = claimRecord(name, holder, note);
    try {
      // Azure's conditional create: an upload with If-None-Match: * fails 409 when the blob exists.
      await this.claimBlob(name).upload(json, Buffer.byteLength(json), {
        blobHTTPHeaders: { blobContentType: 'application/json' },
        conditions: { ifNoneMatch: '*' },
      });
      return true;
    } catch (err) {
      if (err instanceof RestError && (err.statusCode === 409 || err.statusCode === 412)) return false;
      throw err;
    }
  }

  async unclaim(name: string): Promise<void> {
    if (CLAIM_NAME.test(name)) await this.claimBlob(name).deleteIfExists();
  }

  async claims(): Promise<readonly Claim[]> {
    const prefix = `${this.prefix}claims/`;
    const out: Claim[] = [];
    for await (const b of this.container.listBlobsFlat({ prefix })) {
      const name = b.name.slice(prefix.length, -'.json'.length);
      if (!CLAIM_NAME.test(name)) continue;
      const body = await this.claimBlob(name)
        .download(0)
        .then((r) => text(nodeReadable(r.readableStreamBody)))
        .catch(() => undefined);
      out.push(parseClaim(body, name) ?? { name, holder: '(unreadable)', at: (b.properties.lastModified ?? new Date(0)).toISOString() });
    }
    return out;
  }

  private claimBlob(name: string): BlockBlobClient {
    return this.container.getBlockBlobClient(`${this.prefix}claims/${name}.json`);
  }

  private content(id: string): BlockBlobClient {
    return this.container.getBlockBlobClient(`${this.prefix}blobs/${id}`);
  }

  private record(id: string): BlockBlobClient {
    return this.container.getBlockBlobClient(`${this.prefix}meta/${id}.json`);
  }

  private async readRecord(id: string): Promise<{ info: BlobInfo; driver: DriverMeta; etag: string | undefined } | undefined> {
    if (!isBlobId(id)) return undefined;
    try {
      const res = await this.record(id).download(0);
      const { info, driver } = parseMeta(await text(nodeReadable(res.readableStreamBody)), id);
      return { info, driver, etag: res.etag };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async writeRecord(info: BlobInfo, driver: DriverMeta, conditions: BlobRequestConditions = {}): Promise<void> {
    const json = serializeMeta(info, driver);
    await this.record(info.id).upload(json, Buffer.byteLength(json), {
      blobHTTPHeaders: { blobContentType: 'application/json' },
      conditions,
    });
  }

  /** Best effort: the caller gets the put's own error, which a cleanup failure almost always shares. */
  private async discard(id: string, staging: ReturnType<typeof trackStaging>): Promise<void> {
    await staging.settle();
    // Uncommitted blocks outlive a failed upload for up to a week. Microsoft's documented way to
    // drop them is to commit a block list (empty here) and then delete the blob it makes.
    if (staging.staged())
      await this.content(id)
        .commitBlockList([])
        .catch(() => undefined);
    await this.content(id)
      .deleteIfExists()
      .catch(() => undefined);
    await this.record(id)
      .deleteIfExists()
      .catch(() => undefined);
  }
}

/**
 * uploadStream gives no handle on the blocks still being staged when it fails, and a block that
 * lands after our cleanup would linger as an uncommitted blob. It stages through
 * `this.stageBlock`, so that is where we keep count. `settle` waits for the blocks in flight and
 * refuses any further ones.
 */
function trackStaging(blob: BlockBlobClient): { staged(): boolean; settle(): Promise<void> } {
  const inFlight = new Set<Promise<unknown>>();
  let staged = false;
  let closed = false;
  const stage = blob.stageBlock.bind(blob);
  blob.stageBlock = (...args) => {
    if (closed) return Promise.reject(new Error('the put has already failed'));
    staged = true;
    const p = stage(...args);
    inFlight.add(p);
    p.then(
      () => inFlight.delete(p),
      () => inFlight.delete(p),
    );
    return p;
  };
  return {
    staged: () => staged,
    settle: async () => {
      closed = true;
      await Promise.allSettled(inFlight);
    },
  };
}

/** A missing container is a misconfiguration, not a missing blob, and must not read as one. */
function isNotFound(err: unknown): boolean {
  if (!(err instanceof RestError) || err.statusCode !== 404) return false;
  const code = (err.details as { errorCode?: string } | undefined)?.errorCode ?? err.code;
  return code !== 'ContainerNotFound';
}

function nodeReadable(body: NodeJS.ReadableStream | undefined): Readable {
  if (!body) throw new Error('Azure returned no body stream');
  return body instanceof Readable ? body : new Readable().wrap(body);
}

function containerClient(o: AzureStoreOptions): ContainerClient {
  const sasInUrl = o.url !== undefined && new URL(o.url).searchParams.has('sig');
  const byKey = o.accountName !== undefined || o.accountKey !== undefined;
  const bySas = o.sasToken !== undefined || sasInUrl;
  const forms = [
    o.connectionString !== undefined && 'connectionString',
    byKey && 'accountName + accountKey',
    bySas && 'url + sasToken',
  ].filter(Boolean);
  if (forms.length !== 1)
    invalid(
      `needs exactly one credential: connectionString, accountName + accountKey, or url + sasToken; got ${forms.join(' and ') || 'none'}`,
    );
  if (o.connectionString !== undefined) {
    if (o.url !== undefined) invalid('url cannot be combined with connectionString, which names the endpoint');
    return BlobServiceClient.fromConnectionString(o.connectionString, PIPELINE).getContainerClient(o.container);
  }
  if (byKey) {
    if (!o.accountName || !o.accountKey) invalid('accountName and accountKey must be given together');
    return containerAt(
      o.url ?? `https://${o.accountName}.blob.core.windows.net`,
      o.container,
      new StorageSharedKeyCredential(o.accountName, o.accountKey),
    );
  }
  if (o.url === undefined) invalid('sasToken needs url (the account or container URL)');
  if (o.sasToken === undefined) return containerAt(o.url, o.container);
  if (sasInUrl) invalid('url already carries a SAS; drop sasToken or the query');
  return containerAt(`${o.url}${o.url.includes('?') ? '&' : '?'}${o.sasToken.replace(/^\?/, '')}`, o.container);
}

function invalid(why: string): never {
  throw new Error(`AzureBlobStore: ${why}`);
}

/** A URL ending in the container names it; else it is an account URL (path-style ones carry the account in the path). */
function containerAt(url: string, container: string, credential?: StorageSharedKeyCredential): ContainerClient {
  const isContainerUrl = new URL(url).pathname.split('/').filter(Boolean).at(-1) === container;
  return isContainerUrl
    ? new ContainerClient(url, credential, PIPELINE)
    : new BlobServiceClient(url, credential, PIPELINE).getContainerClient(container);
}

/** A `sip` as Azure takes it: IPv4 only, one address or `first-last` (a CIDR range is spelled as its first and last). */
function sasIpRange(sip: string): { start: string; end?: string } {
  const span = parseSpan(sip);
  const refuse = () => new GatewayError('BAD_REQUEST', 'an Azure SAS takes an IPv4 address or range only');
  if (!span) throw refuse();
  if ('first' in span) {
    if (span.first.kind() !== 'ipv4') throw refuse();
    return { start: span.first.toString(), end: span.last.toString() };
  }
  const [net, bits] = span.cidr;
  if (net.kind() !== 'ipv4') throw refuse();
  if (bits === 32) return { start: net.toString() };
  const cidr = `${net.toString()}/${bits}`;
  return { start: ipaddr.IPv4.networkAddressFromCIDR(cidr).toString(), end: ipaddr.IPv4.broadcastAddressFromCIDR(cidr).toString() };
}
