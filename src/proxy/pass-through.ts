import http, { type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Readable, Writable } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { RequestContext } from '../http/context.js';
import { sendError } from '../http/respond.js';
import type { RewriteParams } from '../http/response-params.js';
import { prepareResponseHeaders, rewriteUpstreamUrl, upstreamHeaders } from './headers.js';
import { IdleWatch, type IdleMark } from './idle-watch.js';

/** Client headers that do not belong on a request the gateway makes itself. */
const OWN_REQUEST_DROPPED = new Set([
  'content-type',
  'content-length',
  'content-encoding',
  'accept',
  'accept-encoding',
  'range',
  'if-range',
  'if-none-match',
  'if-modified-since',
  'x-security-context',
  'host',
]);

/** Network errors that mean "could not talk to the upstream" rather than "the upstream said no". */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

/**
 * Per-exchange state, kept on the request, the response and the upstream request under one
 * symbol. This is the hot path of every proxied request: a property on objects that exist anyway
 * (rather than a WeakMap, whose ephemeron entries cost the GC) and shared listener functions
 * (rather than a closure and a `once` wrapper per request) measurably lift throughput.
 */
const kState = Symbol('fhir-binary-gateway.forward');

interface ForwardState extends IdleMark {
  readonly owner: PassThrough;
  readonly ctx: RequestContext;
  readonly res: ServerResponse;
  /** A replacement body (spooled, size-limited): destroyed when the exchange ends early, or its fd would stay open. */
  readonly body: Readable | undefined;
  proxyReq: ClientRequest | undefined;
  proxyRes: IncomingMessage | undefined;
  /** Set when the answer goes through the rewrite engine rather than straight back. */
  readonly rewrite: RewriteParams | undefined;
  /** Set when we abort the upstream request ourselves (timeout, size limit): this is what the client hears. */
  failure: GatewayError | undefined;
}

type WithState<T> = T & { [kState]?: ForwardState };

/**
 * The body of a request that has none (no Content-Length or 0, not chunked), as http-proxy's
 * `buffer` option: http-proxy pipes `buffer || req` into the upstream request, and a pipe from
 * the request adds and removes eight listeners on every GET just to end it. This ends it.
 */
const NO_BODY = {
  pipe<T extends Writable>(dest: T): T {
    dest.end();
    return dest;
  },
} as unknown as Readable;

export interface ForwardOptions {
  /** Path and query relative to the FHIR base, starting with '/', e.g. `/Patient/1?_format=json`. */
  readonly path: string;
  readonly forwardAuthorization: boolean;
  /** A replacement body (size-limited or spooled); the request itself when absent. */
  readonly body?: Readable;
  /** Overrides Content-Length (e.g. a spooled body of known size). */
  readonly contentLength?: number;
  /** Send the answer through the response rewriter with these settings. */
  readonly rewrite?: RewriteParams;
}

/** Rewrites answers that may carry attachments (src/binary/response-rewrite.ts); set once the binary plane exists. */
export interface ResponseHook {
  send(
    req: IncomingMessage,
    up: IncomingMessage,
    res: ServerResponse,
    headers: OutgoingHttpHeaders,
    ctx: RequestContext,
    params: RewriteParams,
  ): void;
}

/** The client went away before the answer was complete: let go of the upstream exchange too, or its socket would sit half-read and never return to the pool. */
function onClientClose(this: WithState<ServerResponse>): void {
  const st = this[kState];
  // Whatever happened, a replacement body is done with once the client's exchange is over.
  st?.body?.destroy();
  if (st) st.owner.idle.delete(st);
  if (this.writableFinished) return;
  st?.proxyRes?.destroy();
  st?.proxyReq?.destroy();
}

/**
 * The upstream timeout is an idle timeout, as proxies have: progress is bytes read from the
 * upstream. It starts once the request is sent, because a client that uploads slowly is not the
 * upstream's fault (the server's requestTimeout bounds that), and stops once the whole answer is
 * in. Undefined: not timed right now.
 */
function upstreamProgress(st: ForwardState): number | undefined | null {
  // Backstop: the client's side is over (onClientClose normally unlinks it): stop watching.
  if (st.res.destroyed) return null;
  const req = st.proxyReq;
  if (req === undefined || !req.writableFinished || st.proxyRes?.complete === true) return undefined;
  return req.socket?.bytesRead ?? 0;
}

/** The upstream died mid-answer: cut the client too, so it never takes a truncated body for a whole one. */
function onUpstreamResponseError(this: WithState<IncomingMessage>, err: Error): void {
  const st = this[kState];
  if (!st) return;
  st.owner.logBroken(st, err);
  st.res.destroy();
}

/**
 * Streams requests the gateway does not own to the upstream and the answers back, with
 * header hygiene both ways. Nothing is buffered: bodies are piped.
 */
export class PassThrough {
  private readonly proxy: httpProxy;
  private readonly agent: http.Agent;
  readonly upstreamBase: string;
  /** upstream.url and its aliases: the prefixes rewritten to the public base in Location headers. */
  readonly upstreamBases: readonly string[];
  responseHook: ResponseHook | undefined;
  private publicBaseUrl = '';
  private publicHost: string | undefined;
  /** In-flight exchanges under the upstream idle timeout. */
  readonly idle: IdleWatch<ForwardState>;
  private readonly onError: httpProxy.ErrorCallback;

  constructor(
    private readonly upstream: GatewayConfig['upstream'] & { url: string },
    publicBase: string,
    private readonly log: Logger,
  ) {
    this.publicBase = publicBase;
    this.upstreamBase = upstream.url.replace(/\/+$/, '');
    this.upstreamBases = [this.upstreamBase, ...upstream.aliases.map((a) => a.replace(/\/+$/, ''))];
    this.idle = new IdleWatch<ForwardState>({
      timeoutMs: upstream.timeoutMs,
      progressOf: upstreamProgress,
      onIdle: (st) => this.fail(st, new GatewayError('UPSTREAM_TIMEOUT')),
    });
    const target = new URL(this.upstreamBase);
    const agentOptions = {
      keepAlive: true,
      maxSockets: upstream.maxSockets,
      maxFreeSockets: upstream.maxSockets,
      scheduling: 'lifo' as const,
    };
    this.agent =
      target.protocol === 'https:'
        ? new https.Agent({ ...agentOptions, rejectUnauthorized: upstream.rejectUnauthorized })
        : new http.Agent(agentOptions);
    this.proxy = httpProxy.createProxyServer({
      // Parsed once here: given as a string, http-proxy re-parses it on every request that
      // carries per-request options.
      target: {
        protocol: target.protocol,
        hostname: target.hostname.replace(/^\[|\]$/g, ''),
        host: target.host,
        port: target.port || (target.protocol === 'https:' ? '443' : '80'),
        path: target.pathname,
      } as unknown as string,
      agent: this.agent,
      changeOrigin: true,
      // We set X-Forwarded-* ourselves, after stripping what the client sent.
      xfwd: false,
      // req.url is set to the classified path; skip http-proxy's url.parse of it.
      toProxy: true,
      selfHandleResponse: true,
      secure: upstream.rejectUnauthorized,
    });
    this.proxy.on('proxyReq', (proxyReq, req) => this.onProxyReq(proxyReq, req));
    this.proxy.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req, res));
    // http-proxy reports a client that went away first as 'econnreset'; nothing to answer then.
    this.proxy.on('econnreset', () => undefined);
    // One bound handler for every request (not a closure each); http-proxy passes req and res back.
    this.onError = (err, req, res) => this.handleError(err, req, res as ServerResponse);
  }

  /** Set once the listen address is known when no publicBaseUrl is configured. */
  set publicBase(url: string) {
    this.publicBaseUrl = url.replace(/\/+$/, '');
    this.publicHost = url && URL.canParse(url) ? new URL(url).host : undefined;
  }

  get publicBase(): string {
    return this.publicBaseUrl;
  }

  forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, opts: ForwardOptions): void {
    // The client left while we were checking (a first token verification, a spooled body): its
    // 'close' has fired already, so nothing would end this exchange. Nothing is sent on its behalf.
    if (res.destroyed) {
      opts.body?.destroy();
      return;
    }
    const state: ForwardState = {
      owner: this,
      ctx,
      res,
      body: opts.body,
      rewrite: opts.rewrite,
      proxyReq: undefined,
      proxyRes: undefined,
      failure: undefined,
      idleProgress: 0,
      idleSince: -1,
      idlePrev: undefined,
      idleNext: undefined,
    };
    const cl = req.headers['content-length'];
    const bodyless = opts.body === undefined && req.headers['transfer-encoding'] === undefined && (cl === undefined || cl === '0');
    (req as WithState<IncomingMessage>)[kState] = state;
    (res as WithState<ServerResponse>)[kState] = state;
    req.headers = upstreamHeaders(req.headers, ctx, opts.forwardAuthorization, this.publicHost);
    if (opts.contentLength !== undefined) req.headers['content-length'] = String(opts.contentLength);
    req.url = opts.path;
    res.on('close', onClientClose);
    this.idle.add(state);
    if (opts.body) {
      opts.body.once('error', (err) =>
        this.fail(state, isGatewayError(err) ? err : new GatewayError('BAD_REQUEST', 'request body failed', { cause: err })),
      );
      this.proxy.web(req, res, { buffer: opts.body }, this.onError);
    } else if (bodyless) {
      this.proxy.web(req, res, { buffer: NO_BODY }, this.onError);
    } else {
      // No options object: http-proxy would copy its whole configuration for one.
      (this.proxy.web as (req: IncomingMessage, res: ServerResponse, cb: httpProxy.ErrorCallback) => void)(req, res, this.onError);
    }
  }

  /**
   * A request of the gateway's own to the upstream (the binary plane writes and reads resources
   * itself), over the same keep-alive pool and with the same header hygiene as forwarded traffic.
   * `headers` replace the client's of the same name.
   */
  request(
    req: IncomingMessage,
    ctx: RequestContext,
    forwardAuthorization: boolean,
    method: string,
    path: string,
    headers: Record<string, string>,
  ): ClientRequest {
    const base = upstreamHeaders(req.headers, ctx, forwardAuthorization, this.publicHost);
    const out: Record<string, string | string[]> = {};
    for (const name in base) {
      // Our own exchange: the client's framing, conditionals and range are not the upstream's business.
      if (OWN_REQUEST_DROPPED.has(name)) continue;
      const v = base[name];
      if (v !== undefined) out[name] = v;
    }
    const target = new URL(this.upstreamBase + path);
    out['host'] = target.host;
    Object.assign(out, headers);
    const mod = target.protocol === 'https:' ? https : http;
    const r = mod.request(target, { method, headers: out, agent: this.agent });
    r.setTimeout(this.upstream.timeoutMs, () => r.destroy(new GatewayError('UPSTREAM_TIMEOUT')));
    return r;
  }

  /** A URL from the upstream (Location, Content-Location), as the client must see it. */
  publicUrl(value: string): string {
    return rewriteUpstreamUrl(value, this.upstreamBases, this.publicBase);
  }

  /** The upstream's response headers with our hygiene applied. */
  clientHeaders(upstream: IncomingMessage['headers'], requestId: string): OutgoingHttpHeaders {
    return prepareResponseHeaders(upstream, requestId, this.upstreamBases, this.publicBase);
  }

  close(): void {
    this.idle.close();
    this.proxy.close();
    this.agent.destroy();
  }

  logBroken(state: ForwardState, err: Error): void {
    this.log.warn({ reqId: state.ctx.id, cause: (err as NodeJS.ErrnoException).code ?? err.message }, 'upstream response broke off');
  }

  fail(state: ForwardState, err: GatewayError): void {
    if (state.failure) return;
    state.failure = err;
    // Destroying with the error routes it to handleError through http-proxy's handler.
    if (state.proxyReq) state.proxyReq.destroy(err);
  }

  private onProxyReq(proxyReq: WithState<ClientRequest>, req: WithState<IncomingMessage>): void {
    const state = req[kState];
    if (!state) return;
    state.proxyReq = proxyReq;
    proxyReq[kState] = state;
    if (state.failure) {
      proxyReq.destroy(state.failure);
      return;
    }
    const socket = proxyReq.socket;
    if (socket?.connecting) {
      const timer = setTimeout(
        () => this.fail(state, new GatewayError('UPSTREAM_UNAVAILABLE', 'connect timeout')),
        this.upstream.connectTimeoutMs,
      );
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    }
  }

  private onProxyRes(proxyRes: WithState<IncomingMessage>, req: WithState<IncomingMessage>, res: ServerResponse): void {
    const state = req[kState];
    if (res.headersSent || res.destroyed || !state) {
      proxyRes.destroy();
      return;
    }
    state.proxyRes = proxyRes;
    proxyRes[kState] = state;
    const headers = prepareResponseHeaders(proxyRes.headers, state.ctx.id, this.upstreamBases, this.publicBase);
    if (state.rewrite && this.responseHook) {
      // The hook owns the answer from here, its failures too (a small one may still become a 502).
      this.responseHook.send(req, proxyRes, res, headers, state.ctx, state.rewrite);
      return;
    }
    proxyRes.on('error', onUpstreamResponseError);
    res.writeHead(proxyRes.statusCode ?? 502, headers);
    proxyRes.pipe(res);
  }

  private handleError(err: NodeJS.ErrnoException, req: WithState<IncomingMessage>, res: ServerResponse): void {
    const state = req[kState];
    if (!state) return;
    state.body?.destroy();
    if (res.destroyed) return;
    let out: GatewayError;
    if (state.failure) out = state.failure;
    else if (isGatewayError(err)) out = err;
    else if (err.code && UNREACHABLE.has(err.code)) out = new GatewayError('UPSTREAM_UNAVAILABLE', undefined, { cause: err });
    else if (err.code === 'ETIMEDOUT') out = new GatewayError('UPSTREAM_TIMEOUT', undefined, { cause: err });
    else out = new GatewayError('UPSTREAM_UNAVAILABLE', undefined, { cause: err });
    this.log.warn({ reqId: state.ctx.id, code: out.code, cause: err.code ?? err.message }, 'upstream exchange failed');
    sendError(req, res, out, state.ctx.id);
  }
}
