import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { addAbortSignal, pipeline, Readable } from 'node:stream';
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
  type StoreUrlGap,
  type StoreUrlRequest,
} from './blob-store.js';
import { verifiedRead } from './chunks.js';
import { DigestStream } from './digest.js';
import { finishPut } from './put.js';
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

export interface S3StoreOptions {
  bucket: string;
  /** Unset: the SDK's own resolution (AWS_REGION, profile). */
  region?: string;
  /** For S3-compatible stores (MinIO, Ceph); usually with forcePathStyle. */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Prepended verbatim to every key, so several gateways or tenants can share a bucket. */
  prefix?: string;
  /** Unset: the SDK's default chain (env, profile, IMDS, web identity). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  serverSideEncryption?: 'AES256' | 'aws:kms' | 'aws:kms:dsse';
  sseKmsKeyId?: string;
  partSizeBytes?: number;
  queueSize?: number;
}

/** Memory per put is bounded by about (queueSize + 1) × partSize: the parts in flight plus the one filling. */
export const DEFAULT_PART_SIZE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_QUEUE_SIZE = 2;
/** S3 refuses smaller parts (except the last); lib-storage keeps its own copy private. */
const MIN_PART_SIZE_BYTES = 5 * 1024 * 1024;
const DEFAULT_LIST_LIMIT = 1000;

/**
 * Blobs as S3 objects: content at `<prefix>blobs/<id>`, its metadata record at
 * `<prefix>meta/<id>.json`. The record is written only once the content upload has completed, so
 * a record means the bytes are all there; the store lists records, never content.
 *
 * A failed put removes what it wrote, but a process that dies mid-upload cannot: give the bucket
 * a lifecycle rule that aborts incomplete multipart uploads (AbortIncompleteMultipartUpload).
 */
export class S3BlobStore implements BlobStore {
  readonly driver = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly sse: { ServerSideEncryption?: S3StoreOptions['serverSideEncryption']; SSEKMSKeyId?: string };
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3StoreOptions, client?: S3Client) {
    const partSize = options.partSizeBytes ?? DEFAULT_PART_SIZE_BYTES;
    // Fail at boot rather than on the first large upload.
    if (partSize < MIN_PART_SIZE_BYTES)
      throw new RangeError(`partSizeBytes must be at least ${MIN_PART_SIZE_BYTES} (the S3 minimum part size)`);
    this.client =
      client ??
      new S3Client({
        region: options.region,
        endpoint: options.endpoint,
        forcePathStyle: options.forcePathStyle,
        credentials: options.credentials,
      });
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.partSize = partSize;
    this.queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    this.sse = {
      ...(options.serverSideEncryption ? { ServerSideEncryption: options.serverSideEncryption } : {}),
      ...(options.sseKmsKeyId ? { SSEKMSKeyId: options.sseKmsKeyId } : {}),
    };
  }

  async put(body: Readable, meta: PutMeta, options: PutOptions = {}): Promise<BlobInfo> {
    const { signal } = options;
    const id = newBlobId();
    const digest = new DigestStream(options.maxBytes, options.rule);
    // What failed on our side of the stream (body, size limit, abort) is what the caller must hear,
    // not whatever S3 call it made fail next, nor a failure to clean up after it.
    let cause: unknown;
    digest.once('error', (err) => {
      cause ??= err;
    });
    pipeline(body, digest, () => {});
    if (signal) addAbortSignal(signal, digest);
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: this.contentKey(id), Body: digest, ContentType: meta.contentType, ...this.sse },
        partSize: this.partSize,
        queueSize: this.queueSize,
        // The upload aborts its own multipart upload before done() rejects.
        leavePartsOnError: false,
      });
      await upload.done();
      // An abort that arrives once every byte was read no longer reaches the stream.
      return await finishPut(id, digest.digest, meta, signal, (info) => this.writeRecord(info, {}));
    } catch (err) {
      const reason = cause ?? err;
      // Nothing will read the rest of the body. lib-storage already destroys the stream it stops
      // iterating; this keeps that from being something we rely on.
      body.destroy();
      // Also covers a completed upload or record whose response was lost.
      await this.delete(id).catch(() => undefined);
      throw reason;
    }
  }

  async get(id: string, range?: ByteRange): Promise<{ readonly info: BlobInfo; readonly body: Readable }> {
    const record = await this.read(id);
    if (!record) throw blobMissing(id);
    checkRange(range, record.info.size);
    if (record.info.size === 0) return { info: record.info, body: Readable.from([]) };
    // Every read of one get() is of the object the first one read (a range of content without chunk
    // digests is read twice: checked whole, then served): one replaced meanwhile fails its condition.
    const pin: { etag?: string } = {};
    return {
      info: record.info,
      body: await verifiedRead(record.info, range, (start, end) => this.fetch(record.info, { start, end }, pin)),
    };
  }

  /** Bytes `range` of the content (all of it without a Range header when that is the whole), as S3 answers them. */
  private async fetch(info: BlobInfo, span: ByteRange, pin: { etag?: string } = {}): Promise<Readable> {
    const { id, size } = info;
    const range = span.start === 0 && span.end === size - 1 ? undefined : span;
    const res = await this.client
      .send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.contentKey(id),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
          ...(pin.etag ? { IfMatch: pin.etag } : {}),
        }),
      )
      .catch((err: unknown) => {
        // Deleted between reading the record and reading the content.
        if (isAbsent(err)) throw blobMissing(id);
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412)
          throw blobUnreadable(`blob ${id} was replaced while it was read`);
        // The record's size allows the range; the object does not.
        if ((err as { name?: string }).name === 'InvalidRange')
          throw blobUnreadable(`S3 has no bytes ${range?.start}-${range?.end} of blob ${id}`);
        throw err;
      });
    if (!(res.Body instanceof Readable)) throw new Error('S3 GetObject returned no Node stream');
    // The condition, and the answer's own ETag for a store that ignores conditions on GET.
    if (pin.etag !== undefined && res.ETag !== pin.etag) {
      res.Body.destroy();
      throw blobUnreadable(`blob ${id} was replaced while it was read`);
    }
    pin.etag ??= res.ETag;
    // A store that ignores or rewrites the Range, or content that does not match its record, must
    // never be served as this blob's bytes.
    const want = range ? `bytes ${range.start}-${range.end}/${size}` : undefined;
    const length = range ? range.end - range.start + 1 : size;
    if (res.ContentRange !== want || (res.ContentLength !== undefined && res.ContentLength !== length)) {
      res.Body.destroy();
      throw blobUnreadable(`S3 answered ${res.ContentRange ?? `${res.ContentLength} bytes`} for ${want ?? `${size} bytes`}`);
    }
    return res.Body;
  }

  async head(id: string): Promise<BlobInfo | undefined> {
    return (await this.read(id))?.info;
  }

  async delete(id: string): Promise<void> {
    if (!isBlobId(id)) return;
    // The record first: from then on the blob does not exist for anyone, even if deleting the content fails.
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.recordKey(id) }));
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.contentKey(id) }));
  }

  async setMeta(id: string, patch: MetaPatch): Promise<BlobInfo> {
    const record = await this.read(id);
    if (!record) throw blobMissing(id);
    const info = patchInfo(record.info, patch);
    await this.writeRecord(info, record.driver);
    return info;
  }

  /**
   * The cursor is S3's continuation token, passed through unchanged. `from` is S3's `StartAfter`
   * (on the first page; S3 ignores it beside a continuation token): the key `meta/{from}` sorts
   * just before `meta/{from}.json` and every longer id that begins with `from`.
   */
  async list(options: ListOptions = {}): Promise<ListPage> {
    const recordPrefix = `${this.prefix}meta/`;
    const from = options.from;
    const res = await this.client.send(
      new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: recordPrefix + (options.prefix ?? ''),
        MaxKeys: options.limit ?? DEFAULT_LIST_LIMIT,
        ContinuationToken: options.cursor,
        ...(from !== undefined && options.cursor === undefined ? { StartAfter: recordPrefix + from } : {}),
      }),
    );
    const ids = (res.Contents ?? [])
      .map((o) => o.Key ?? '')
      .filter((key) => key.endsWith('.json'))
      .map((key) => key.slice(recordPrefix.length, -'.json'.length))
      .filter((id) => isBlobId(id) && (from === undefined || id >= from));
    const { items, unreadable } = await readRecords(ids, (id) => this.read(id));
    return {
      items,
      ...(unreadable.length ? { unreadable } : {}),
      ...(res.IsTruncated && res.NextContinuationToken ? { cursor: res.NextContinuationToken } : {}),
    };
  }

  async claim(name: string, holder: string, note?: string): Promise<boolean> {
    if (!CLAIM_NAME.test(name)) throw new Error(`not a claim name: ${name}`);
    const record = claimRecord(name, holder, note);
    try {
      // S3's conditional write: a second put of the key fails 412 (or 409 while the first is in flight).
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.claimKey(name),
          Body: record,
          ContentType: 'application/json',
          IfNoneMatch: '*',
          ...this.sse,
        }),
      );
      return true;
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw err;
    }
  }

  async unclaim(name: string): Promise<void> {
    if (CLAIM_NAME.test(name)) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.claimKey(name) }));
  }

  async claims(): Promise<readonly Claim[]> {
    const prefix = `${this.prefix}claims/`;
    const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix }));
    const out: Claim[] = [];
    for (const o of res.Contents ?? []) {
      const name = (o.Key ?? '').slice(prefix.length, -'.json'.length);
      if (!CLAIM_NAME.test(name)) continue;
      const text = await this.client
        .send(new GetObjectCommand({ Bucket: this.bucket, Key: this.claimKey(name) }))
        .then((r) => r.Body?.transformToString('utf8'))
        .catch(() => undefined);
      out.push(parseClaim(text, name) ?? { name, holder: '(unreadable)', at: (o.LastModified ?? new Date(0)).toISOString() });
    }
    return out;
  }

  /**
   * Presigned GETs (SigV4 in the query): signed at the URL's start for its window, with the
   * answer's Content-Type and Content-Disposition. S3 has no client-address condition in a
   * presigned URL, no stored policy to revoke it by, accepts it over plain HTTP where the
   * endpoint does, and serves it whatever the blob's record says (quarantined, deleted): those
   * are its gaps. SigV4 allows at most seven days.
   */
  readonly readUrls = { gaps: new Set<StoreUrlGap>(['ip', 'policy', 'https', 'withdraw']), maxWindowMs: 7 * 24 * 3_600_000 };

  async readUrl(id: string, r: StoreUrlRequest): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.contentKey(id),
      ...(r.contentType ? { ResponseContentType: r.contentType } : {}),
      ...(r.disposition ? { ResponseContentDisposition: r.disposition } : {}),
      ...(r.cacheControl ? { ResponseCacheControl: r.cacheControl } : {}),
    });
    return getSignedUrl(this.client, command, {
      signingDate: r.startsAt,
      expiresIn: Math.round((r.expiresAt.getTime() - r.startsAt.getTime()) / 1000),
    });
  }

  private claimKey(name: string): string {
    return `${this.prefix}claims/${name}.json`;
  }

  private contentKey(id: string): string {
    return `${this.prefix}blobs/${id}`;
  }

  private recordKey(id: string): string {
    return `${this.prefix}meta/${id}.json`;
  }

  private async read(id: string): Promise<{ info: BlobInfo; driver: DriverMeta } | undefined> {
    if (!isBlobId(id)) return undefined;
    let text: string;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.recordKey(id) }));
      text = (await res.Body?.transformToString('utf8')) ?? '';
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw err;
    }
    return parseMeta(text, id);
  }

  private async writeRecord(info: BlobInfo, driver: DriverMeta): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.recordKey(info.id),
        Body: serializeMeta(info, driver),
        ContentType: 'application/json',
        ...this.sse,
      }),
    );
  }
}

/** A missing key, but not a missing bucket: that is a misconfiguration and must not read as "no such blob". */
function isAbsent(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || (e.$metadata?.httpStatusCode === 404 && e.name !== 'NoSuchBucket');
}
