import { createReadStream } from 'node:fs';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { isActiveContent } from '../content/media-type.js';
import { noteBlob, noteInline } from '../lib/blob-events.js';
import { GatewayError } from '../errors/catalogue.js';
import { contentFailure } from '../errors/map.js';
import type { BlobRef } from '../fhir/blob-reference.js';
import { parseRange, type ByteRange } from '../lib/range.js';
import type { Exchange } from '../security/exchange.js';
import type { BlobStore } from '../storage/blob-store.js';
import { firstBytes, integrityFailure } from '../storage/chunks.js';
import { FilePump } from '../storage/file-pump.js';
import type { FhirResource } from './upstream-resources.js';

/** Raw content must never run as a page of ours: no scripts, no plugins, no same-origin. */
const RAW_SECURITY_HEADERS = { 'x-content-type-options': 'nosniff', 'content-security-policy': "default-src 'none'; sandbox" } as const;

/**
 * The Cache-Control of content served as itself (`content.cacheControl`: `no-store`, or
 * `private, max-age=N`): without one, a browser or a shared proxy may keep PHI. A 304 carries it
 * too (RFC 9110 §15.4.5), or a cache would apply its own heuristics to what it revalidated.
 */
export function contentCacheControl(x: Exchange): string {
  return x.settings.config.content.cacheControl;
}

/** Content to serve raw: inline bytes the upstream held (small, or spooled to a file), or a checked blob. */
export type RawContent = { readonly contentType: string; readonly size: number } & (
  { readonly inline: Buffer } | { readonly file: string } | { readonly ref: BlobRef }
);

/** ETag and Last-Modified from a resource's meta, and our request id. */
export function versionHeaders(resource: FhirResource, requestId: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { 'x-request-id': requestId };
  const versionId = resource.meta?.versionId;
  if (typeof versionId === 'string') headers['etag'] = `W/"${versionId}"`;
  const lastUpdated = typeof resource.meta?.lastUpdated === 'string' ? Date.parse(resource.meta.lastUpdated) : NaN;
  if (!Number.isNaN(lastUpdated)) headers['last-modified'] = new Date(lastUpdated).toUTCString();
  return headers;
}

/**
 * Content served as itself (Binary read raw, $binary-access-read, raw Media): Range (206/416),
 * If-Range, HEAD, and headers that keep a browser from running it. Bytes come from the store,
 * from a plain local file when the store has one (no read-stream garbage), or from inline data
 * the upstream held.
 */
export class RawResponder {
  constructor(
    private readonly store: BlobStore,
    private readonly log: Logger,
  ) {}

  /**
   * `answer` is what a signed URL pins (its own Cache-Control and Content-Disposition); active
   * content is an attachment whatever it says.
   */
  async serve(
    x: Exchange,
    headers: OutgoingHttpHeaders,
    content: RawContent,
    answer?: { readonly cacheControl: string; readonly disposition: string | undefined },
  ): Promise<void> {
    const { req, res } = x;
    const { contentType, size } = content;
    Object.assign(headers, RAW_SECURITY_HEADERS, {
      'content-type': contentType,
      'accept-ranges': 'bytes',
      'cache-control': answer?.cacheControl ?? contentCacheControl(x),
    });
    if (answer?.disposition) headers['content-disposition'] = answer.disposition;
    if (isActiveContent(contentType)) headers['content-disposition'] = 'attachment';
    // If-Range (RFC 9110 13.1.5): a range only of the representation the client already has, or
    // all of it. It matches a strong ETag only, exactly (a signed URL's: the content's SHA-256);
    // our other ETags are weak, and a date cannot tell two versions written within one second
    // apart (Last-Modified has whole seconds), so a resumed download would splice them: any other
    // If-Range gets the whole content.
    const ifRange = req.headers['if-range'];
    const etag = typeof headers['etag'] === 'string' ? headers['etag'] : undefined;
    const rangeAllowed = ifRange === undefined || (etag !== undefined && !etag.startsWith('W/') && ifRange === etag);
    const range = rangeAllowed ? parseRange(req.headers.range, size) : undefined;
    if (range === 'unsatisfiable')
      throw new GatewayError('RANGE_NOT_SATISFIABLE', undefined, { headers: { 'content-range': `bytes */${size}` } });
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
    headers['content-length'] = range ? range.end - range.start + 1 : size;
    const bodyless = req.method === 'HEAD' || size === 0;
    // Opened, and the first chunk checked, before the head goes out: a store failure or a corrupt
    // start is still an OperationOutcome, not a cut connection.
    const plain =
      bodyless || !('ref' in content)
        ? undefined
        : await this.openPlain(content.ref.id, range?.start ?? 0, range?.end ?? size - 1, x.ctx.id);
    const body =
      bodyless || plain || 'inline' in content
        ? undefined
        : 'file' in content
          ? createReadStream(content.file, range ? { start: range.start, end: range.end } : {})
          : await this.open(content.ref.id, x.ctx.id, range);
    // Content sent, for the audit trail: a blob read, or data the FHIR server held inline (no blob,
    // content all the same: attack audit-raw-inline-content).
    if (!bodyless && 'ref' in content) noteBlob(x.ctx, { action: 'read', blob: content.ref.id, bytes: Number(headers['content-length']) });
    else if (!bodyless) noteInline(x.ctx, Number(headers['content-length']));
    res.writeHead(range ? 206 : 200, headers);
    if (bodyless) {
      res.end();
      return;
    }
    if (plain) {
      try {
        await plain.to(res);
        res.end();
      } catch (err) {
        this.midStream(err as Error, x.ctx.id, 'ref' in content ? content.ref.id : undefined);
        res.destroy();
      }
      return;
    }
    if (body) {
      await this.streamTo(body, res, true, x.ctx.id, 'ref' in content ? content.ref.id : undefined);
      return;
    }
    const inline = (content as { inline: Buffer }).inline;
    res.end(range ? inline.subarray(range.start, range.end + 1) : inline);
  }

  /** The blob's plain local file, when the store has one (filesystem, unencrypted), ready to pump bytes `start`..`end`. */
  private async openPlain(id: string, start: number, end: number, reqId: string): Promise<FilePump | undefined> {
    if (!this.store.openPlainFile) return undefined;
    try {
      const plain = await this.store.openPlainFile(id);
      return plain && (await FilePump.open(plain.file, plain.info, start, end));
    } catch (err) {
      throw this.refused(err, id, reqId);
    }
  }

  /** A store failure as the client sees it; content that fails its digest is logged at error with the blob id. */
  private refused(err: unknown, id: string, reqId: string): GatewayError {
    const failure = contentFailure(err);
    const corrupt = integrityFailure(failure);
    if (corrupt) this.log.error({ reqId, blob: id, cause: corrupt.cause }, 'stored content cannot be served as recorded: refused');
    return failure;
  }

  /**
   * A blob's content stream once its first bytes are there (their chunk checked by the store), its
   * failures named as the client should see them: a blob corrupt at its start is refused before
   * anything of the response goes out.
   */
  async open(id: string, reqId: string, range?: ByteRange): Promise<Readable> {
    try {
      return await firstBytes((await this.store.get(id, range)).body);
    } catch (err) {
      throw this.refused(err, id, reqId);
    }
  }

  /** A store failure after the head went out (the connection is cut): logged at error, with the blob id when a digest failed. */
  private midStream(err: Error, reqId: string, blob: string | undefined): void {
    const corrupt = integrityFailure(err);
    const cause = corrupt?.cause ?? (err.cause instanceof Error ? err.cause.message : ((err as NodeJS.ErrnoException).code ?? err.message));
    this.log.error({ reqId, ...(blob ? { blob } : {}), cause }, 'stored content failed mid-stream: response cut');
  }

  /** Pipes stored content to the client; a failure midway cuts the connection, so a truncated body is never taken for a whole one. */
  streamTo(body: Readable, res: ServerResponse, end: boolean, reqId: string, blob?: string): Promise<void> {
    return new Promise((resolve) => {
      body.on('error', (err) => {
        this.midStream(err, reqId, blob);
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
}
