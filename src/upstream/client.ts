import type { UpstreamCalls } from '../telemetry/calls.js';
import http, { type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import { upstreamFailure } from '../errors/map.js';
import type { BaseUrls } from '../lib/public-url.js';
import type { Exchange } from '../security/exchange.js';
import type { UpstreamReader } from '../security/security-context.js';
import { prepareResponseHeaders, upstreamHeaders } from './headers.js';

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

export const FHIR_JSON = 'application/fhir+json; charset=utf-8';
/** A resource the upstream returns is small once its content is in the store: a larger one is not read into memory. */
export const MAX_RESOURCE_BYTES = 1024 * 1024;

export interface UpstreamClientOptions {
  readonly urls: BaseUrls;
  readonly agent: http.Agent;
  /** upstream.timeoutMs: how long the upstream may stay silent. */
  readonly timeoutMs: number;
  /** Latency and spans of the calls. */
  readonly calls?: UpstreamCalls;
}

/**
 * The gateway's own requests to the upstream (the binary plane reads and writes resources
 * itself), over the forwarder's keep-alive pool and with the same header hygiene: the client's
 * headers, minus those that are not the upstream's business, plus ours.
 */
export class UpstreamClient implements UpstreamReader {
  constructor(private readonly opts: UpstreamClientOptions) {}

  /** A request on behalf of `x`; `headers` replace the client's of the same name. Not sent until {@link send}. */
  request(x: Exchange, method: string, path: string, headers: Record<string, string>): ClientRequest {
    const base = upstreamHeaders(x.req.headers, x.ctx, x.rule.forwardAuthorization, this.opts.urls.publicHost);
    const out: Record<string, string | string[]> = {};
    for (const name in base) {
      // Our own exchange: the client's framing, conditionals and range are not the upstream's business.
      if (OWN_REQUEST_DROPPED.has(name)) continue;
      const v = base[name];
      if (v !== undefined) out[name] = v;
    }
    const target = new URL(this.opts.urls.upstream + path);
    out['host'] = target.host;
    Object.assign(out, headers);
    const call = this.opts.calls?.begin(x.interaction.kind, method, out);
    const r = (target.protocol === 'https:' ? https : http).request(target, { method, headers: out, agent: this.opts.agent });
    r.setTimeout(this.opts.timeoutMs, () => r.destroy(new GatewayError('UPSTREAM_TIMEOUT')));
    if (call) {
      r.once('response', (res) => call.end(res.statusCode ?? 0));
      r.once('error', (err) => call.end(err));
    }
    return r;
  }

  /** GETs `path` as FHIR JSON; resolves with the response head. */
  get(x: Exchange, path: string): Promise<IncomingMessage> {
    return send(this.request(x, 'GET', path, { accept: FHIR_JSON }));
  }

  /** A small GET: the parsed answer when it is 200, undefined otherwise. */
  async getJson(x: Exchange, path: string): Promise<unknown> {
    const up = await this.get(x, path);
    if (up.statusCode !== 200) {
      up.resume();
      return undefined;
    }
    return readJson(up, MAX_RESOURCE_BYTES);
  }

  /** The upstream's response headers as the client gets them. */
  answerHeaders(up: IncomingMessage, requestId: string): OutgoingHttpHeaders {
    return prepareResponseHeaders(up.headers, requestId, this.opts.urls);
  }
}

/** Sends a request (the body a buffer or a stream) and resolves with the response head; a failure is the GatewayError the client is told. */
export function send(req: ClientRequest, body?: Buffer | Readable): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', (err) => {
      // pipe() does not end its source when the destination fails: a spooled body's file would
      // stay open for good, one descriptor per failed request.
      if (body !== undefined && !Buffer.isBuffer(body)) body.destroy();
      const failure = upstreamFailure(err);
      // The whole request had gone out: the upstream may have acted on it, answer lost or late.
      if (req.writableFinished) answerLost.add(failure);
      reject(failure);
    });
    if (body === undefined || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    // A body that fails to read (its file vanished) must not leave the upstream waiting for the rest.
    body.once('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}

const answerLost = new WeakSet<object>();

/**
 * Whether `err` (from {@link send}) came after the whole request had been sent — the connection
 * dropped or the answer came too late — so the upstream may have carried out the write. A failure
 * before (no connection, a body cut short) means it cannot have.
 */
export function outcomeUnknown(err: unknown): boolean {
  return typeof err === 'object' && err !== null && answerLost.has(err);
}

/** Reads a small JSON answer; refuses rather than buffers one larger than `maxBytes`. */
export async function readJson(res: IncomingMessage, maxBytes: number): Promise<unknown> {
  const tooLarge = () => new GatewayError('UPSTREAM_INVALID', `the upstream's resource is larger than ${maxBytes} bytes`);
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > maxBytes) {
    res.destroy();
    throw tooLarge();
  }
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res) {
      n += (chunk as Buffer).length;
      if (n > maxBytes) {
        res.destroy();
        throw tooLarge();
      }
      parts.push(chunk as Buffer);
    }
  } catch (err) {
    // The upstream broke off its answer: it is the upstream that failed, not us.
    throw upstreamFailure(err);
  }
  try {
    return JSON.parse(Buffer.concat(parts, n).toString('utf8'));
  } catch (err) {
    throw new GatewayError('UPSTREAM_INVALID', 'the upstream answered with malformed JSON', { cause: err });
  }
}
