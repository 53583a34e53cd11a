import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import type { Logger } from 'pino';
import { GatewayError } from '../errors/catalogue.js';
import { contentLink } from '../fhir/content-link.js';
import { noteBlob, noteInline, type BlobEventLog } from '../lib/blob-events.js';
import type { BaseUrls } from '../lib/public-url.js';
import { sendError } from '../lib/respond.js';
import { clientGone } from '../lib/spool-file.js';
import type { BlobStore } from '../storage/blob-store.js';
import { Inflater } from './inflate.js';
import { integrityFailure } from '../storage/chunks.js';
import { guarded, type RewriteParams } from './params.js';

const JSON_TYPE = /^application\/(fhir\+json|json\+fhir|json)\s*(;|$)/i;
/** Answers this small are read whole and looked at before deciding whether to rewrite them at all. */
const SMALL = 64 * 1024;

/** Where an answer goes: the client's request and response, and the request id for the log. */
export interface Client {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly ctx: { readonly id: string } & BlobEventLog;
}

export interface ResponseRewriteDeps {
  readonly store: BlobStore;
  readonly urls: BaseUrls;
  /** The spool directory of the configuration in force. */
  spoolDir(): string;
  /** `content.cacheControl` in force: an answer that may carry stored content is cached no more than the content itself. */
  cacheControl(): string;
  readonly log: Logger;
}

/**
 * Sends an upstream answer to the client through the rewrite engine's read direction (inflate
 * within the budget, links past it, public URLs). Small answers that cannot contain anything to
 * rewrite are sent as they came: most reads pay for a scan, not a parse.
 */
export class ResponseRewrite {
  /** What can only appear in a body that needs rewriting: a `data`/`_data` key, an escape that could spell one, an upstream URL. */
  private readonly markers: readonly Buffer[];
  private readonly log: Logger;

  constructor(private readonly deps: ResponseRewriteDeps) {
    this.log = deps.log;
    this.markers = ['data"', '\\u', '\\/', ...deps.urls.upstreams].map((s) => Buffer.from(s));
  }

  /** The upstream's answer `up`, with `headers` already cleaned, to `to`. */
  send(to: Client, up: IncomingMessage, headers: OutgoingHttpHeaders, params: RewriteParams): void {
    const status = up.statusCode ?? 502;
    if (withheld(to, status, headers, params)) {
      up.resume();
      return;
    }
    const length = up.headers['content-length'];
    if (to.req.method === 'HEAD' || status === 204 || status === 304 || length === '0') {
      bodiless(to.req.method === 'HEAD', headers, this.deps.cacheControl());
      relay(up, to.res, status, headers);
      return;
    }
    const type = up.headers['content-type'] ?? '';
    const encoded = up.headers['content-encoding'] !== undefined && up.headers['content-encoding'] !== 'identity';
    if (!JSON_TYPE.test(type) || encoded) {
      // An error page cannot carry attachment content; a success the gateway cannot read could.
      // Where the answer is held to what the caller may see, an error page unread is left out.
      if (status >= 400 && (guarded(params) || params.withhold)) {
        up.resume();
        emptyAnswer(to, status, headers, params);
        return;
      }
      if (status >= 400) {
        relay(up, to.res, status, headers);
        return;
      }
      up.destroy();
      const what = encoded
        ? 'the upstream answered compressed'
        : `the upstream answered a FHIR interaction with ${type.slice(0, 64) || 'no content type'}`;
      sendError(to.req, to.res, new GatewayError('UPSTREAM_INVALID', what), to.ctx.id);
      return;
    }
    // A writer who may not read gets an error's OperationOutcome, never a resource (a 412 with the
    // current version): only small answers can be looked at whole, larger ones are left out.
    if (params.withhold && status >= 300 && (length === undefined || Number(length) > SMALL)) {
      up.destroy();
      emptyAnswer(to, status, headers, params);
      return;
    }
    // Upstream failures from here on are handled where the body is read (small) or by the pipeline.
    if (length !== undefined && Number(length) <= SMALL) {
      this.small(to, up, status, headers, params);
      return;
    }
    void this.rewrite(to, up, up, status, headers, params);
  }

  /** Sends a JSON body the gateway holds (a spooled batch response, a small resource) through the engine; resolves when it is sent or abandoned. */
  sendBody(to: Client, body: AsyncIterable<Buffer>, status: number, headers: OutgoingHttpHeaders, params: RewriteParams): Promise<void> {
    if (withheld(to, status, headers, params)) return Promise.resolve();
    return this.rewrite(to, body, undefined, status, headers, params);
  }

  /** A small body in memory: sent as it is, with its length, unless it may need rewriting. */
  sendBuffer(to: Client, body: Buffer, status: number, headers: OutgoingHttpHeaders, params: RewriteParams): Promise<void> {
    if (withheld(to, status, headers, params)) return Promise.resolve();
    if (params.withhold && status >= 300 && !isOperationOutcome(body)) {
      emptyAnswer(to, status, headers, params);
      return Promise.resolve();
    }
    // A guarded answer is read whatever it holds: which entries it may carry is in every one.
    if (guarded(params) || params.withheldEntries !== undefined || this.mayNeedRewrite(body))
      return this.rewrite(to, once(body), undefined, status, headers, params);
    headers['content-length'] = body.length;
    to.res.writeHead(status, headers);
    to.res.end(body);
    return Promise.resolve();
  }

  /**
   * Reads a small answer whole (Node holds the upstream to its Content-Length: at most SMALL
   * bytes arrive), by events rather than an async iterator: this is every ordinary read's path.
   */
  private small(to: Client, up: IncomingMessage, status: number, headers: OutgoingHttpHeaders, params: RewriteParams): void {
    // State on the response object and shared listeners, not closures: this runs for every read.
    (up as WithSmall)[kSmall] = { owner: this, to, status, headers, params, parts: [], n: 0 };
    // `on`, not `once`: once() costs a wrapper per listener per request. 'close' follows 'end'
    // (the answer complete) or a break (not complete), so it alone decides; with no 'error'
    // listener an upstream answer that breaks emits no 'error' (Node emits it only to listeners).
    up.on('data', onSmallData);
    up.on('close', onSmallClose);
  }

  /** The small answer is whole: on to the client. */
  finishSmall(s: SmallState): void {
    void this.sendBuffer(s.to, s.parts.length === 1 ? s.parts[0] : Buffer.concat(s.parts, s.n), s.status, s.headers, s.params);
  }

  /** Nothing was sent yet: the client hears a clean 502 rather than a truncated answer (unless the proxy's error handler already answered, which must not be cut short by a second one). */
  brokeSmall(s: SmallState): void {
    const { req, res, ctx } = s.to;
    this.log.warn({ reqId: ctx.id }, 'upstream response broke off');
    if (!res.headersSent && !res.destroyed)
      sendError(req, res, new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream broke off its answer'), ctx.id);
  }

  private mayNeedRewrite(body: Buffer): boolean {
    for (const m of this.markers) if (body.includes(m)) return true;
    return false;
  }

  private rewrite(
    to: Client,
    source: AsyncIterable<Buffer>,
    up: IncomingMessage | undefined,
    status: number,
    headers: OutgoingHttpHeaders,
    params: RewriteParams,
  ): Promise<void> {
    const { res, ctx } = to;
    const urls = this.deps.urls;
    const inflater = new Inflater({
      store: this.deps.store,
      maxBytes: params.maxBytes,
      inflate: params.inflate,
      owners: params.owners,
      spoolDir: this.deps.spoolDir(),
      link: (owner, path) => contentLink(urls.public, owner, path),
      ...(params.signedLink ? { signedLink: params.signedLink } : {}),
      publicUrl: (url) => urls.toPublic(url),
      warn: (what, blob) => this.log.warn({ reqId: ctx.id, blob }, what),
      corrupt: (blob, cause) => this.log.error({ reqId: ctx.id, blob, cause }, 'stored content failed its digest: linked instead'),
      served: (blob, owner, bytes) => noteBlob(ctx, { action: 'read', blob, resource: owner, bytes, inflated: true }),
      servedInline: (bytes) => noteInline(ctx, bytes),
      mayRead: (type) => params.reader.mayRead(type),
      ...(params.withheldEntries ? { withheldEntries: params.withheldEntries } : {}),
      ...(params.guard ? { guard: params.guard } : {}),
      ...(params.entryGuards ? { entryGuards: params.entryGuards } : {}),
    });
    delete headers['content-length'];
    // What the engine writes may carry stored content (inflated attachments): cached like it.
    headers['cache-control'] = this.deps.cacheControl();
    if (to.req.httpVersion === '1.0') return this.spooled(to, source, up, status, headers, inflater);
    res.writeHead(status, headers);
    let left = false; // the client went away before the answer was complete
    res.once('close', () => (left = !res.writableFinished));
    return new Promise((resolve) => {
      pipeline(
        source,
        (src: AsyncIterable<Buffer>) => inflater.run(src),
        res,
        (err) => {
          resolve();
          if (err) {
            const upstreamBroke = up !== undefined && !up.complete && !left;
            // Headers are out: cutting the connection is the only way to say the body is not whole.
            if (!res.destroyed) res.destroy();
            up?.destroy();
            if (!left) this.failed(ctx.id, err, upstreamBroke);
            return;
          }
          if (inflater.report.inflated || inflater.report.linked)
            this.log.debug({ reqId: ctx.id, ...inflater.report }, 'response rewritten');
        },
      );
    });
  }

  /**
   * HTTP/1.0 has no chunked encoding: an answer without a length ends when the connection closes,
   * so a cut one would look whole. The rewritten answer goes to a private spool file first and is
   * sent with its length; a failure on the way is an error answer, never a truncated 200.
   */
  private async spooled(
    to: Client,
    source: AsyncIterable<Buffer>,
    up: IncomingMessage | undefined,
    status: number,
    headers: OutgoingHttpHeaders,
    inflater: Inflater,
  ): Promise<void> {
    const file = join(this.deps.spoolDir(), `fbg-answer-${randomUUID()}.json`);
    const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    const gone = clientGone(to.res);
    try {
      await pipelineAsync(source, (src: AsyncIterable<Buffer>) => inflater.run(src), out, { signal: gone.signal });
    } catch (err) {
      gone.release();
      up?.destroy();
      await unlink(file).catch(() => undefined);
      if (gone.signal.aborted) return;
      const upstreamBroke = up !== undefined && !up.complete;
      this.failed(to.ctx.id, err as Error, upstreamBroke);
      const failure = integrityFailure(err)
        ? new GatewayError('BLOB_UNREADABLE', 'stored content failed its integrity check')
        : upstreamBroke
          ? new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream broke off its answer')
          : new GatewayError('INTERNAL');
      if (!to.res.headersSent && !to.res.destroyed) sendError(to.req, to.res, failure, to.ctx.id);
      return;
    }
    gone.release();
    headers['content-length'] = out.bytesWritten;
    to.res.writeHead(status, headers);
    await new Promise<void>((resolve) =>
      pipeline(createReadStream(file), to.res, () => {
        void unlink(file).catch(() => undefined);
        resolve();
      }),
    );
  }

  /** Why a rewritten answer did not complete, logged by kind (never its content). */
  private failed(reqId: string, err: Error, upstreamBroke: boolean): void {
    const corrupt = integrityFailure(err);
    if (upstreamBroke) this.log.warn({ reqId }, 'upstream response broke off');
    else if (corrupt)
      this.log.error(
        { reqId, ...(corrupt.blob ? { blob: corrupt.blob } : {}), cause: corrupt.cause },
        'stored content failed mid-stream: response cut',
      );
    else this.log.warn({ reqId, cause: (err as { code?: string }).code ?? err.message }, 'response rewrite failed');
  }
}

/**
 * The headers of an answer the rewrite owns that has no body to rewrite (a HEAD, a 204, a 304, an
 * empty one): what its GET's 200 would say. The same Cache-Control (a 304 updates the stored
 * response's headers, RFC 9110 §15.4.5; a HEAD may freshen it, RFC 9111 §4.3.5), and for a HEAD
 * no Content-Length: the upstream's is the length of the resource with our references, not of the
 * rewritten answer a GET gets (sent chunked). Attack rewritten-head-304-headers.
 */
export function bodiless(head: boolean, headers: OutgoingHttpHeaders, cacheControl: string): void {
  headers['cache-control'] = cacheControl;
  if (head) delete headers['content-length'];
}

/** The upstream's answer as it came (it cannot carry anything to rewrite). */
export function relay(up: IncomingMessage, res: ServerResponse, status: number, headers: OutgoingHttpHeaders): void {
  res.writeHead(status, headers);
  up.on('error', () => res.destroy());
  up.pipe(res);
}

async function* once(body: Buffer): AsyncGenerator<Buffer> {
  yield body;
}

const kSmall = Symbol('fhir-binary-gateway.small-answer');

interface SmallState {
  readonly owner: ResponseRewrite;
  readonly to: Client;
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly params: RewriteParams;
  readonly parts: Buffer[];
  n: number;
}

type WithSmall = IncomingMessage & { [kSmall]?: SmallState };

function onSmallData(this: WithSmall, chunk: Buffer): void {
  const s = this[kSmall]!;
  s.parts.push(chunk);
  s.n += chunk.length;
}

function onSmallClose(this: WithSmall): void {
  // 'close' comes once: nothing else decides the answer.
  const s = this[kSmall]!;
  if (this.complete) s.owner.finishSmall(s);
  else s.owner.brokeSmall(s);
}

/**
 * A successful write answer to a caller who may not read what was written: status and the
 * version headers only (RewriteParams.withhold). Returns whether it was sent so.
 */
function withheld(to: Client, status: number, headers: OutgoingHttpHeaders, params: RewriteParams): boolean {
  if (!params.withhold || status < 200 || status >= 300) return false;
  emptyAnswer(to, status, headers, params);
  return true;
}

/** The status and headers of an answer whose body is left out. */
function emptyAnswer(to: Client, status: number, headers: OutgoingHttpHeaders, params: RewriteParams): void {
  if (params.bare) for (const name of ['location', 'content-location', 'etag', 'last-modified']) delete headers[name];
  delete headers['content-type'];
  delete headers['content-encoding'];
  delete headers['transfer-encoding'];
  headers['content-length'] = 0;
  to.res.writeHead(status, headers);
  to.res.end();
}

/** Whether a small JSON answer is an OperationOutcome (the one thing an error may carry to a writer without read). */
function isOperationOutcome(body: Buffer): boolean {
  try {
    return (JSON.parse(body.toString('utf8')) as { resourceType?: unknown } | null)?.resourceType === 'OperationOutcome';
  } catch {
    return false;
  }
}
