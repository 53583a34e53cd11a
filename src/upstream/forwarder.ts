import type { UpstreamCalls } from '../telemetry/calls.js';
import type { CallTimer } from '../telemetry/tracing.js';
import http from 'node:http';
import https from 'node:https';
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
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
import { exchangeEnded, onExchangeEnd } from '../lib/exchange-end.js';

/**
 * Per-exchange state, kept on the upstream request and answer under one symbol (and given to
 * the exchange's end listener). This is the hot path of every proxied request: a property on
 * objects that exist anyway (rather than a WeakMap, whose ephemeron entries cost the GC) and shared listener functions
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
  /** upstream.timeoutMs; the connect timeout and TLS verification are the agent's (agent.ts). */
  readonly upstream: { readonly timeoutMs: number };
  /** Answers that may carry attachments go through it. */
  readonly responses: ResponseRewrite;
  readonly log: Logger;
  /** Latency and spans of the calls. */
  readonly calls?: UpstreamCalls;
}

/** The client went away before the answer was complete: let go of the upstream exchange too, or its socket would sit half-read and never return to the pool. */
function onClientClose(res: ServerResponse, st: ForwardState): void {
  // Whatever happened, a replacement body is done with once the client's exchange is over.
  st.body?.destroy();
  st.owner.idle.delete(st);
  if (res.writableFinished) return;
  st.proxyRes?.destroy();
  st.proxyReq?.destroy();
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

/** The upstream answered: on to the forwarder, with the exchange's state. */
function onUpstreamResponse(this: WithState<ClientRequest>, proxyRes: IncomingMessage): void {
  const st = this[kState];
  if (st) st.owner.answered(st, proxyRes);
}

/** The upstream exchange failed (connection refused or reset, a timeout, a body that broke). */
function onUpstreamError(this: WithState<ClientRequest>, err: NodeJS.ErrnoException): void {
  const st = this[kState];
  if (st) st.owner.failed(st, err);
}

/**
 * Streams requests to the upstream and the answers back on node:http, with header hygiene both
 * ways. Nothing is buffered: bodies are piped; answers that may carry attachments go through
 * the response rewrite.
 *
 * Why node:http directly and not http-proxy (the bench's baseline): for a forwarder that sets
 * every header itself and handles every answer itself (`selfHandleResponse`), http-proxy adds a
 * copy of its options, a URL join, six closures and listeners and four events per request —
 * about a tenth of the gateway's throughput on small reads (bench/RESULTS.md, issue 14). What it did for us is
 * here: the target's host, path and TLS settings, the body piped, errors of the upstream
 * request to one handler, the answer to `answered`.
 */
export class Forwarder {
  /** In-flight exchanges under the upstream idle timeout. */
  readonly idle: IdleWatch<ForwardState>;
  readonly log: Logger;
  private readonly request: typeof http.request;
  /** Request options shared by every exchange but its own method, path and headers. */
  private readonly target: {
    readonly hostname: string;
    readonly port: string;
    readonly host: string;
    /** The upstream base path without its trailing '/': what the classified path is joined to. */
    readonly base: string;
  };

  constructor(private readonly opts: ForwarderOptions) {
    this.log = opts.log;
    this.idle = new IdleWatch<ForwardState>({
      timeoutMs: opts.upstream.timeoutMs,
      progressOf: upstreamProgress,
      onIdle: (st) => this.fail(st, new GatewayError('UPSTREAM_TIMEOUT')),
    });
    const target = new URL(opts.urls.upstream);
    const secure = target.protocol === 'https:';
    this.request = secure ? https.request : http.request;
    this.target = {
      hostname: target.hostname.replace(/^\[|\]$/g, ''),
      port: target.port || (secure ? '443' : '80'),
      // The Host the upstream is addressed by (its own name, not the client's: the client's
      // Host travels as X-Forwarded-Host).
      host: target.host,
      base: target.pathname.replace(/\/+$/, ''),
    };
  }

  forward(x: Exchange, opts: ForwardOptions = {}): void {
    const { req, res } = x;
    // The client left while we were checking (a first token verification, a spooled body): its
    // exchange has ended already, so nothing would end this one. Nothing is sent on its behalf.
    if (exchangeEnded(res)) {
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
    const headers = upstreamHeaders(req.headers, x.ctx, x.rule.forwardAuthorization, this.opts.urls.publicHost);
    headers.host = this.target.host;
    if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
    // A DELETE says it has no body, as it reached upstreams through http-proxy before (some
    // servers wait for a length on DELETE); flow.ts refuses a DELETE that announces one.
    else if (bodyless && req.method === 'DELETE') headers['content-length'] = '0';
    const i = x.interaction;
    const method = req.method ?? 'GET';
    state.call = this.opts.calls?.begin(i.kind, method, headers);
    onExchangeEnd(res, onClientClose, state);
    this.idle.add(state);
    const t = this.target;
    let proxyReq: WithState<ClientRequest>;
    try {
      proxyReq = this.request({
        hostname: t.hostname,
        port: t.port,
        method,
        path: t.base + (opts.path ?? targetOf(i)),
        headers,
        // TLS verification (upstream.rejectUnauthorized) is the agent's: set per request it would
        // also split the pool the gateway's own upstream calls share.
        agent: this.opts.agent,
      });
    } catch (err) {
      // Node refused the request before sending anything (a header value it will not write).
      this.failed(state, err as NodeJS.ErrnoException);
      return;
    }
    state.proxyReq = proxyReq;
    proxyReq[kState] = state;
    proxyReq.on('response', onUpstreamResponse);
    proxyReq.on('error', onUpstreamError);
    if (opts.body) {
      opts.body.once('error', (err) =>
        this.fail(state, isGatewayError(err) ? err : new GatewayError('BAD_REQUEST', 'request body failed', { cause: err })),
      );
      opts.body.pipe(proxyReq);
    } else if (bodyless) {
      proxyReq.end();
    } else {
      req.pipe(proxyReq);
    }
  }

  close(): void {
    this.idle.close();
  }

  fail(state: ForwardState, err: GatewayError): void {
    if (state.failure) return;
    state.failure = err;
    // Destroying with the error routes it to `failed` through the request's 'error' listener.
    if (state.proxyReq) state.proxyReq.destroy(err);
  }

  /** The upstream's answer head arrived. */
  answered(state: ForwardState, proxyRes: WithState<IncomingMessage>): void {
    const { res } = state.x;
    if (res.headersSent || res.destroyed) {
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

  /** The upstream exchange failed: the client hears why, unless it has gone or heard the answer already. */
  failed(state: ForwardState, err: NodeJS.ErrnoException): void {
    const { req, res } = state.x;
    state.body?.destroy();
    // The client left first (its end destroyed the upstream request): not the upstream's failure,
    // so not counted as one.
    if (exchangeEnded(res)) return;
    // Before any answer (once the head came, the call has been timed).
    if (!state.proxyRes) state.call?.end(err);
    const out = state.failure ?? upstreamFailure(err);
    this.log.warn({ reqId: state.x.ctx.id, code: out.code, cause: err.code ?? err.message }, 'upstream exchange failed');
    sendError(req, res, out, state.x.ctx.id);
  }
}
