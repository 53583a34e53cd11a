import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { RequestContext } from '../http/context.js';

/** RFC 9110 §7.6.1 / RFC 7230 §6.1: hop-by-hop fields, never forwarded. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
/** Fields the gateway owns towards the upstream: whatever the client sent under these names is dropped. */
const GATEWAY_OWNED = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-real-ip', 'x-request-id', 'expect'];
/** Fields of the upstream's response that say too much about it. */
const RESPONSE_DROPPED = ['server', 'x-powered-by'];

/** Removes every field named in Connection, then the hop-by-hop ones; must run before ours are added. */
function stripConnectionNamed(headers: IncomingHttpHeaders | OutgoingHttpHeaders): void {
  const conn = headers['connection'];
  if (typeof conn === 'string') {
    for (const token of conn.split(',')) {
      const name = token.trim().toLowerCase();
      if (name) delete headers[name];
    }
  }
  for (const h of HOP_BY_HOP) delete headers[h];
}

/**
 * Rewrites the incoming request's headers in place into what the upstream receives (http-proxy
 * copies req.headers). Ours are added last, so a client cannot name them in Connection to make
 * us drop them.
 */
export function prepareUpstreamHeaders(
  headers: IncomingHttpHeaders,
  ctx: RequestContext,
  forwardAuthorization: boolean,
): void {
  const host = headers.host;
  stripConnectionNamed(headers);
  for (const h of GATEWAY_OWNED) delete headers[h];
  if (!forwardAuthorization) delete headers.authorization;
  const peer = ctx.peerIp.toString();
  headers['x-forwarded-for'] = ctx.forwardedChain.length > 0 ? `${ctx.forwardedChain.join(', ')}, ${peer}` : peer;
  headers['x-forwarded-proto'] = ctx.proto;
  if (host !== undefined) headers['x-forwarded-host'] = host;
  headers['x-request-id'] = ctx.id;
}

/** Rewrites an absolute URL under one of the upstream's bases to the same path under the public base. */
export function rewriteUpstreamUrl(value: string, upstreamBases: readonly string[], publicBase: string): string {
  for (const base of upstreamBases) {
    if (value.startsWith(base)) {
      const rest = value.slice(base.length);
      if (rest === '' || rest[0] === '/' || rest[0] === '?') return publicBase + rest;
    }
  }
  return value;
}

export function prepareResponseHeaders(
  upstream: IncomingHttpHeaders,
  requestId: string,
  upstreamBases: readonly string[],
  publicBase: string,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...upstream };
  stripConnectionNamed(out);
  for (const h of RESPONSE_DROPPED) delete out[h];
  for (const h of ['location', 'content-location'] as const) {
    const v = out[h];
    if (typeof v === 'string') out[h] = rewriteUpstreamUrl(v, upstreamBases, publicBase);
  }
  out['x-request-id'] = requestId;
  return out;
}
