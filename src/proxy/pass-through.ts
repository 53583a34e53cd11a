import http, { type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import httpProxy from 'http-proxy';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { GatewayError, isGatewayError } from '../errors.js';
import type { RequestContext } from '../http/context.js';
import { sendError } from '../http/respond.js';
import { prepareResponseHeaders, prepareUpstreamHeaders } from './headers.js';

/** Network errors that mean "could not talk to the upstream" rather than "the upstream said no". */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

interface ForwardState {
  readonly ctx: RequestContext;
  proxyReq: ClientRequest | undefined;
  /** Set when we abort the upstream request ourselves (timeout, size limit): this is what the client hears. */
  failure: GatewayError | undefined;
}

export interface ForwardOptions {
  /** Path and query relative to the FHIR base, starting with '/', e.g. `/Patient/1?_format=json`. */
  readonly path: string;
  readonly forwardAuthorization: boolean;
  /** A replacement body (size-limited or spooled); the request itself when absent. */
  readonly body?: Readable;
  /** Overrides Content-Length (e.g. a spooled body of known size). */
  readonly contentLength?: number;
}

/**
 * Streams requests the gateway does not own to the upstream and the answers back, with
 * header hygiene both ways. Nothing is buffered: bodies are piped.
 */
export class PassThrough {
  private readonly proxy: httpProxy;
  private readonly agent: http.Agent;
  private readonly states = new WeakMap<IncomingMessage, ForwardState>();
  readonly upstreamBase: string;
  /** upstream.url and its aliases: the prefixes rewritten to the public base in Location headers. */
  private readonly upstreamBases: readonly string[];
  /** Set once the listen address is known when no publicBaseUrl is configured. */
  publicBase: string;

  constructor(
    private readonly upstream: GatewayConfig['upstream'] & { url: string },
    publicBase: string,
    private readonly log: Logger,
  ) {
    this.publicBase = publicBase.replace(/\/+$/, '');
    this.upstreamBase = upstream.url.replace(/\/+$/, '');
    this.upstreamBases = [this.upstreamBase, ...upstream.aliases.map((a) => a.replace(/\/+$/, ''))];
    const target = new URL(this.upstreamBase);
    const agentOptions = { keepAlive: true, maxSockets: upstream.maxSockets, maxFreeSockets: upstream.maxSockets, scheduling: 'lifo' as const };
    this.agent =
      target.protocol === 'https:'
        ? new https.Agent({ ...agentOptions, rejectUnauthorized: upstream.rejectUnauthorized })
        : new http.Agent(agentOptions);
    this.proxy = httpProxy.createProxyServer({
      target: this.upstreamBase,
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
    this.proxy.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req, res as ServerResponse));
    // http-proxy reports a client that went away first as 'econnreset'; nothing to answer then.
    this.proxy.on('econnreset', () => undefined);
  }

  forward(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, opts: ForwardOptions): void {
    const state: ForwardState = { ctx, proxyReq: undefined, failure: undefined };
    this.states.set(req, state);
    prepareUpstreamHeaders(req.headers, ctx, opts.forwardAuthorization);
    if (opts.contentLength !== undefined) req.headers['content-length'] = String(opts.contentLength);
    req.url = opts.path;
    if (opts.body) {
      opts.body.once('error', (err) => this.fail(state, isGatewayError(err) ? err : new GatewayError('BAD_REQUEST', 'request body failed', { cause: err })));
    }
    res.once('close', () => {
      // The client went away before the answer was complete: let go of the upstream exchange too,
      // or its socket would sit half-read and never return to the pool.
      if (!res.writableFinished) state.proxyReq?.destroy();
    });
    this.proxy.web(req, res, opts.body ? { buffer: opts.body } : {}, (err: NodeJS.ErrnoException) => this.onError(err, req, res, state));
  }

  close(): void {
    this.proxy.close();
    this.agent.destroy();
  }

  private fail(state: ForwardState, err: GatewayError): void {
    if (state.failure) return;
    state.failure = err;
    // Destroying with the error routes it to onError through http-proxy's handler.
    if (state.proxyReq) state.proxyReq.destroy(err);
  }

  private onProxyReq(proxyReq: ClientRequest, req: IncomingMessage): void {
    const state = this.states.get(req);
    if (!state) return;
    state.proxyReq = proxyReq;
    if (state.failure) {
      proxyReq.destroy(state.failure);
      return;
    }
    const socket = proxyReq.socket;
    if (socket?.connecting) {
      const timer = setTimeout(() => this.fail(state, new GatewayError('UPSTREAM_UNAVAILABLE', 'connect timeout')), this.upstream.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    }
    // An idle timeout, as proxies do: the upstream may stream a long answer as long as bytes keep
    // coming. Armed once the request is sent: a client that uploads slowly is not the upstream's fault
    // (the server's requestTimeout bounds that).
    const arm = () => proxyReq.setTimeout(this.upstream.timeoutMs, () => this.fail(state, new GatewayError('UPSTREAM_TIMEOUT')));
    if (proxyReq.writableFinished) arm();
    else proxyReq.once('finish', arm);
  }

  private onProxyRes(proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse): void {
    const state = this.states.get(req);
    const id = state?.ctx.id ?? '';
    if (res.headersSent || res.destroyed) {
      proxyRes.destroy();
      return;
    }
    res.writeHead(proxyRes.statusCode ?? 502, prepareResponseHeaders(proxyRes.headers, id, this.upstreamBases, this.publicBase));
    proxyRes.on('error', () => res.destroy());
    proxyRes.pipe(res);
  }

  private onError(err: NodeJS.ErrnoException, req: IncomingMessage, res: ServerResponse, state: ForwardState): void {
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
