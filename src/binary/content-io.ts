import { createReadStream } from 'node:fs';
import { unlink, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ContentCheck } from '../content/check.js';
import { isActiveContent } from '../content/media-type.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { RequestContext } from '../http/context.js';
import type { PassThrough } from '../proxy/pass-through.js';
import type { EffectiveRule } from '../security/policy.js';
import { pumpFile } from '../storage/file-pump.js';
import { BlobNotFound, BlobUnreadable, type BlobInfo, type BlobStore, type ByteRange } from '../storage/blob-store.js';
import { extractAttachment } from '../rewrite/extract.js';
import { resolveAttachment, type PathStep } from './attachment-path.js';
import { parseRange } from './range.js';
import type { BlobRef } from './reference.js';
import { ResponseRewrite } from './response-rewrite.js';
import { readJson, sendUpstream, UpstreamFailure } from './upstream-exchange.js';

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';
/** A resource the upstream returns is small once its content is in the store; an inline one larger than this is not read into memory. */
export const MAX_RESOURCE_BYTES = 1024 * 1024;
/** X-Security-Context / securityContext: a relative reference to the resource that governs access. */
export const RELATIVE_REFERENCE = /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,64}$/;
/** Raw content must never run as a page of ours: no scripts, no plugins, no same-origin. */
const RAW_SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; sandbox" } as const;

/** Content to serve raw: inline bytes the upstream held (small, or spooled to a file), or a checked blob. */
export type RawContent = { readonly contentType: string; readonly size: number } & (
  { readonly inline: Buffer } | { readonly file: string } | { readonly ref: BlobRef }
);

/** One attachment of a resource read from the upstream, with its inline content if it has some. */
export interface FetchedAttachment {
  /** The whole resource when it was small; its identity members (resourceType, id, meta, securityContext) when it was streamed. */
  readonly resource: FhirResource;
  readonly whole: boolean;
  readonly attachment: Record<string, unknown> | undefined;
  readonly inline: { readonly bytes: Buffer } | { readonly file: string; readonly size: number } | undefined;
  /** Removes the spool file, if any. */
  release(): Promise<void>;
}

export interface FhirResource {
  resourceType?: unknown;
  id?: unknown;
  meta?: { versionId?: unknown; lastUpdated?: unknown };
  [key: string]: unknown;
}

/**
 * What every binary-plane handler does with bytes and with the upstream: store an upload through
 * the content check, serve content raw (Range, HEAD, safe headers), fetch a small resource, and
 * settle blobs once the upstream has answered. Transport-level, so handlers stay about FHIR.
 */
export class ContentIo {
  /** The rewrite engine's read direction: every resource the upstream answers with goes back through it. */
  readonly responses: ResponseRewrite;

  constructor(
    readonly store: BlobStore,
    readonly upstream: PassThrough,
    spoolDir: () => string,
    private readonly log: Logger,
  ) {
    this.responses = new ResponseRewrite(store, upstream, spoolDir, log);
  }

  /** Streams the body into the store through the content check; undefined when the client went away (nothing to answer). */
  async storeBody(req: IncomingMessage, res: ServerResponse, declared: string, maxBytes: number): Promise<BlobInfo | undefined> {
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.once('close', onClose);
    const checked = pipeline(req, new ContentCheck(declared), () => undefined) as Readable;
    try {
      return await this.store.put(checked, { contentType: declared }, { maxBytes, signal: abort.signal });
    } catch (err) {
      if (abort.signal.aborted) return undefined;
      if (isGatewayError(err)) throw err;
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    } finally {
      res.off('close', onClose);
    }
  }

  /** GETs `path` from the upstream as FHIR JSON; resolves with the response head. */
  async fetchRaw(req: IncomingMessage, ctx: RequestContext, rule: EffectiveRule, path: string): Promise<IncomingMessage> {
    try {
      return await sendUpstream(this.upstream.request(req, ctx, rule.forwardAuthorization, 'GET', path, { accept: FHIR_JSON }));
    } catch (err) {
      throw err instanceof UpstreamFailure ? err.gatewayError : err;
    }
  }

  /** GETs a resource from the upstream: the parsed resource on 200 (bounded), else the response to relay. */
  async fetchResource(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    path: string,
  ): Promise<{ resource: FhirResource } | { relay: IncomingMessage }> {
    const up = await this.fetchRaw(req, ctx, rule, path);
    if (up.statusCode !== 200) return { relay: up };
    return { resource: (await readJson(up, MAX_RESOURCE_BYTES)) as FhirResource };
  }

  /**
   * GETs a resource for one of its attachments (`binary`: Binary.data). A small resource is parsed
   * whole; a larger one is streamed and only the attachment is kept, its inline data spooled to a
   * private file, so a resource held with hundreds of megabytes inline is served in bounded memory.
   */
  async fetchAttachment(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    path: string,
    steps: readonly PathStep[] | 'binary',
    spoolDir: string,
  ): Promise<FetchedAttachment | { relay: IncomingMessage }> {
    const up = await this.fetchRaw(req, ctx, rule, path);
    if (up.statusCode !== 200) return { relay: up };
    const length = up.headers['content-length'];
    if (length !== undefined && Number(length) <= MAX_RESOURCE_BYTES) {
      const resource = (await readJson(up, MAX_RESOURCE_BYTES)) as FhirResource;
      const attachment =
        steps === 'binary' ? (resource.resourceType === 'Binary' ? resource : undefined) : resolveAttachment(resource, steps);
      const data = attachment?.['data'];
      return {
        resource,
        whole: true,
        attachment,
        inline: typeof data === 'string' ? { bytes: Buffer.from(data, 'base64') } : undefined,
        release: async () => undefined,
      };
    }
    const x = await extractAttachment(up, steps, spoolDir);
    const file = x.spool?.file;
    return {
      resource: x.resource,
      whole: false,
      attachment: x.attachment,
      inline: x.spool,
      release: async () => (file ? unlink(file).catch(() => undefined) : undefined),
    };
  }

  /** ETag, Last-Modified from the resource's meta. */
  versionHeaders(resource: FhirResource, ctx: RequestContext): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = { 'x-request-id': ctx.id };
    const versionId = resource.meta?.versionId;
    if (typeof versionId === 'string') headers['etag'] = `W/"${versionId}"`;
    const lastUpdated = typeof resource.meta?.lastUpdated === 'string' ? Date.parse(resource.meta.lastUpdated) : NaN;
    if (!Number.isNaN(lastUpdated)) headers['last-modified'] = new Date(lastUpdated).toUTCString();
    return headers;
  }

  /**
   * The blob a reference names, checked against the hash the upstream holds and against the
   * resource it was written for: a swapped, altered or borrowed blob is never served (a reference
   * copied into another resource would otherwise read content its securityContext protects).
   */
  async blobFor(ref: BlobRef, owner: string): Promise<BlobInfo> {
    let info: BlobInfo | undefined;
    try {
      info = await this.store.head(ref.id);
    } catch (err) {
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    }
    if (!info) throw new GatewayError('BLOB_UNREADABLE', 'the content this resource refers to is missing from the store');
    if (info.sha256 !== ref.sha256)
      throw new GatewayError('BLOB_UNREADABLE', 'the stored content does not match the hash the FHIR server holds');
    if (info.state !== 'linked' || info.owner !== owner)
      throw new GatewayError('BLOB_UNREADABLE', 'the stored content was not written for this resource');
    return info;
  }

  /** Serves content as itself: Range (206/416), HEAD, and headers that keep a browser from running it. */
  async serveRaw(req: IncomingMessage, res: ServerResponse, headers: OutgoingHttpHeaders, content: RawContent): Promise<void> {
    const { contentType, size } = content;
    Object.assign(headers, RAW_SECURITY_HEADERS, { 'content-type': contentType, 'accept-ranges': 'bytes' });
    if (isActiveContent(contentType)) headers['content-disposition'] = 'attachment';
    // If-Range (RFC 9110 13.1.5): a range only of the representation the client already has. Our
    // ETags are weak and never match; a date must equal Last-Modified exactly. Otherwise: all of it.
    const ifRange = req.headers['if-range'];
    const rangeAllowed =
      ifRange === undefined || (typeof ifRange === 'string' && !/^(W\/)?"/.test(ifRange) && ifRange === headers['last-modified']);
    const range = rangeAllowed ? parseRange(req.headers.range, size) : undefined;
    if (range === 'unsatisfiable')
      throw new GatewayError('RANGE_NOT_SATISFIABLE', undefined, { headers: { 'content-range': `bytes */${size}` } });
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    headers['content-length'] = range ? range.end - range.start + 1 : size;
    const bodyless = req.method === 'HEAD' || size === 0;
    // Opened before the head goes out: a store failure is still an OperationOutcome, not a cut connection.
    const plain = bodyless || !('ref' in content) ? undefined : await this.openPlain(content.ref.id);
    const body =
      bodyless || plain || 'inline' in content
        ? undefined
        : 'file' in content
          ? createReadStream(content.file, range ? { start: range.start, end: range.end } : {})
          : await this.open(content.ref.id, range);
    res.writeHead(range ? 206 : 200, headers);
    if (bodyless) {
      res.end();
      return;
    }
    if (plain) {
      try {
        await pumpFile(plain, range?.start ?? 0, range?.end ?? size - 1, res);
        res.end();
      } catch (err) {
        this.log.error({ reqId: headers['x-request-id'], cause: (err as Error).message }, 'stored content failed mid-stream');
        res.destroy();
      }
      return;
    }
    if (body) {
      await this.streamTo(body, res, true, String(headers['x-request-id']));
      return;
    }
    const inline = (content as { inline: Buffer }).inline;
    res.end(range ? inline.subarray(range.start, range.end + 1) : inline);
  }

  /** The blob's plain local file, when the store has one (filesystem, unencrypted). */
  private async openPlain(id: string): Promise<FileHandle | undefined> {
    if (!this.store.openPlainFile) return undefined;
    try {
      return (await this.store.openPlainFile(id))?.file;
    } catch (err) {
      if (err instanceof BlobNotFound || (err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GatewayError('BLOB_UNREADABLE', 'the stored content is missing');
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    }
  }

  /** A blob's content stream, its failures named as the client should see them. */
  async open(id: string, range?: ByteRange): Promise<Readable> {
    try {
      return (await this.store.get(id, range)).body;
    } catch (err) {
      if (isGatewayError(err)) throw err;
      if (err instanceof BlobNotFound || err instanceof BlobUnreadable || (err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new GatewayError('BLOB_UNREADABLE', 'the stored content is missing or cannot be read');
      throw new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
    }
  }

  /** Pipes stored content to the client; a failure midway cuts the connection, so a truncated body is never taken for a whole one. */
  streamTo(body: Readable, res: ServerResponse, end: boolean, reqId?: string): Promise<void> {
    return new Promise((resolve) => {
      body.on('error', (err) => {
        this.log.error(
          { reqId, cause: err instanceof BlobUnreadable ? err.message : ((err as NodeJS.ErrnoException).code ?? err.message) },
          'stored content failed mid-stream',
        );
        res.destroy();
        resolve();
      });
      body.on('end', resolve);
      res.once('close', () => {
        body.destroy();
        resolve();
      });
      body.pipe(res, { end });
    });
  }

  /**
   * Sends a resource the gateway rewrote to the upstream. Its answer decides the blobs' fate:
   * accepted → `linked` to `owner(response)`; refused or unreachable → deleted. Resolves with the
   * upstream's response, for the caller to relay.
   */
  async commit(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    method: string,
    path: string,
    headers: Record<string, string>,
    blobs: readonly { id: string; contentType: string }[],
    body: Buffer | Readable,
    length: number,
    owner: (up: IncomingMessage) => string | undefined,
  ): Promise<IncomingMessage> {
    const ids = blobs.map((b) => b.id);
    let up: IncomingMessage;
    try {
      up = await sendUpstream(
        this.upstream.request(req, ctx, rule.forwardAuthorization, method, path, {
          ...headers,
          'content-type': FHIR_JSON,
          'content-length': String(length),
          accept: FHIR_JSON,
        }),
        body,
      );
    } catch (err) {
      await this.discard(ids, ctx);
      throw err instanceof UpstreamFailure ? err.gatewayError : err;
    }
    const status = up.statusCode ?? 502;
    if (status < 200 || status >= 300) {
      await this.discard(ids, ctx);
      return up;
    }
    const who = owner(up);
    for (const blob of blobs) {
      await this.store
        .setMeta(blob.id, { state: 'linked', contentType: blob.contentType, ...(who ? { owner: who } : {}) })
        .catch((err: unknown) => {
          // The upstream has the resource, so the blob must stay; pending is what a sweeper checks
          // against the upstream before removing anything.
          this.log.warn(
            { reqId: ctx.id, blob: blob.id, cause: (err as Error).message },
            'blob accepted upstream but could not be marked linked',
          );
        });
    }
    return up;
  }

  /** Sends the upstream's answer on, through the response rewrite (attachments inflated or linked, within the budget). */
  relay(req: IncomingMessage, up: IncomingMessage, res: ServerResponse, ctx: RequestContext): void {
    const headers = this.upstream.clientHeaders(up.headers, ctx.id);
    if (ctx.rewrite) {
      this.responses.send(req, up, res, headers, ctx, ctx.rewrite);
      return;
    }
    res.writeHead(up.statusCode ?? 502, headers);
    up.on('error', () => res.destroy());
    up.pipe(res);
  }

  async discard(ids: readonly string[], ctx: RequestContext): Promise<void> {
    for (const id of ids) {
      await this.store.delete(id).catch((err: unknown) => {
        this.log.error(
          { reqId: ctx.id, blob: id, cause: (err as Error).message },
          'could not delete a refused blob; it stays pending for the sweeper',
        );
      });
    }
  }
}
