import type { UpstreamCalls } from '../telemetry/calls.js';
import type { CallTimer } from '../telemetry/tracing.js';
import type http from 'node:http';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import { upstreamFailure } from '../errors/map.js';
import { targetOf } from '../fhir/interaction.js';
import type { BaseUrls } from '../lib/public-url.js';
import { sendError } from '../lib/respond.js';
import type { RewriteParams } from '../rewrite/params.js';
import type { ResponseRewrite } from '../rewrite/response-rewrite.js';
import type { Exchange } from '../security/exchange.js';
import { prepareResponseHeaders, upstreamHeaders } from './headers.js';
import { IdleWatch, type IdleMark } from './idle-watch.js';

/**
 * Per-exchange state, kept on the request, the response and the upstream request under one
 * symbol. This is the hot path of every proxied request: a property on objects that exist anyway
 * (rather than a WeakMap, whose ephemeron entries cost the GC) and shared listener functions
 * (rather than a closure and a `once` wrapper per request) measurably lift throughput.
 */
const kState = Symbol('fhir-binary-gateway.forward');

interface ForwardState extends IdleMark {
  readonly owner: Forwarder;
  readonly x: Exchange;
  /** A replacement body (spooled, size-limited): destroyed when the exchange ends early, or its fd would stay open. */
  readonly body: Readable | undefined;
  proxyReq: ClientRequest | undefined;
  proxyRes: IncomingMessage | undefined;
  /** Set when the answer goes through the rewrite engine rather than straight back. */
  readonly rewrite: RewriteParams | undefined;
  /** Set when we abort the upstream request ourselves (timeout, size limit): this is what the client hears. */
  failure: GatewayError | undefined;
  /** Latency and span of the upstream call, when watched. */
  call: CallTimer | undefined;
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
  /** Path and query relative to the FHIR base, starting with '/'; the exchange's interaction when absent. */
  readonly path?: string;
  /** A replacement body (size-limited or spooled); the request itself when absent. */
  readonly body?: Readable;
  /** Overrides Content-Length (e.g. a spooled body of known size). */
  readonly contentLength?: number;
  /** Send the answer through the response rewrite with these settings. */
  readonly rewrite?: RewriteParams;
}

export interface ForwarderOptions {
  readonly urls: BaseUrls;
  readonly agent: http.Agent;
  readonly upstream: { readonly timeoutMs: number; readonly connectTimeoutMs: number; readonly rejectUnauthorized: boolean };
  /** Answers that may carry attachments go through it. */
  readonly responses: ResponseRewrite;
  readonly log: Logger;
  /** Latency and spans of the calls. */
  readonly calls?: UpstreamCalls;
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
  if (st.x.res.destroyed) return null;
  const req = st.proxyReq;
  if (req === undefined || !req.writableFinished || st.proxyRes?.complete === true) return undefined;
  return req.socket?.bytesRead ?? 0;
}

/** The upstream died mid-answer: cut the client too, so it never takes a truncated body for a whole one. */
function onUpstreamResponseError(this: WithState<IncomingMessage>, err: Error): void {
  const st = this[kState];
  if (!st) return;
  st.owner.log.warn({ reqId: st.x.ctx.id, cause: (err as NodeJS.ErrnoException).code ?? err.message }, 'upstream response broke off');
  st.x.res.destroy();
}

/**
 * Streams requests to the upstream and the answers back (http-proxy), with header hygiene both
 * ways. Nothing is buffered: bodies are piped; answers that may carry attachments go through
 * the response rewrite.
 */
export class Forwarder {
  private readonly proxy: httpProxy;
  /** In-flight exchanges under the upstream idle timeout. */
  readonly idle: IdleWatch<ForwardState>;
  readonly log: Logger;
  private readonly onError: httpProxy.ErrorCallback;

  constructor(private readonly opts: ForwarderOptions) {
    this.log = opts.log;
    this.idle = new IdleWatch<ForwardState>({
      timeoutMs: opts.upstream.timeoutMs,
      progressOf: upstreamProgress,
      onIdle: (st) => this.fail(st, new GatewayError('UPSTREAM_TIMEOUT')),
    });
    const target = new URL(opts.urls.upstream);
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
      agent: opts.agent,
      changeOrigin: true,
      // We set X-Forwarded-* ourselves, after stripping what the client sent.
      xfwd: false,
      // req.url is set to the classified path; skip http-proxy's url.parse of it.
      toProxy: true,
      selfHandleResponse: true,
      secure: opts.upstream.rejectUnauthorized,
    });
    this.proxy.on('proxyReq', (proxyReq, req) => this.onProxyReq(proxyReq, req));
    this.proxy.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req, res));
    // http-proxy reports a client that went away first as 'econnreset'; nothing to answer then.
    this.proxy.on('econnreset', () => undefined);
    // One bound handler for every request (not a closure each); http-proxy passes req and res back.
    this.onError = (err, req, res) => this.handleError(err, req, res as ServerResponse);
  }

  forward(x: Exchange, opts: ForwardOptions = {}): void {
    const { req, res } = x;
    // The client left while we were checking (a first token verification, a spooled body): its
    // 'close' has fired already, so nothing would end this exchange. Nothing is sent on its behalf.
    if (res.destroyed) {
      opts.body?.destroy();
      return;
    }
    const state: ForwardState = {
      owner: this,
      x,
      body: opts.body,
      rewrite: opts.rewrite,
      proxyReq: undefined,
      proxyRes: undefined,
      failure: undefined,
      call: undefined,
      idleProgress: 0,
      idleSince: -1,
      idlePrev: undefined,
      idleNext: undefined,
    };
    const cl = req.headers['content-length'];
    const bodyless = opts.body === undefined && req.headers['transfer-encoding'] === undefined && (cl === undefined || cl === '0');
    (req as WithState<IncomingMessage>)[kState] = state;
    (res as WithState<ServerResponse>)[kState] = state;
    req.headers = upstreamHeaders(req.headers, x.ctx, x.rule.forwardAuthorization, this.opts.urls.publicHost);
    if (opts.contentLength !== undefined) req.headers['content-length'] = String(opts.contentLength);
    const i = x.interaction;
    state.call = this.opts.calls?.begin(i.kind, req.method ?? 'GET', req.headers);
    req.url = opts.path ?? targetOf(i);
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

  close(): void {
    this.idle.close();
    this.proxy.close();
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
        this.opts.upstream.connectTimeoutMs,
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
    state.call?.end(proxyRes.statusCode ?? 0);
    const headers = prepareResponseHeaders(proxyRes.headers, state.x.ctx.id, this.opts.urls);
    if (state.rewrite) {
      // The rewrite owns the answer from here, its failures too (a small one may still become a 502).
      this.opts.responses.send(state.x, proxyRes, headers, state.rewrite);
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
    // Before any answer (once the head came, the call has been timed).
    if (!state.proxyRes) state.call?.end(err);
    if (res.destroyed) return;
    const out = state.failure ?? upstreamFailure(err);
    this.log.warn({ reqId: state.x.ctx.id, code: out.code, cause: err.code ?? err.message }, 'upstream exchange failed');
    sendError(req, res, out, state.x.ctx.id);
  }
}
