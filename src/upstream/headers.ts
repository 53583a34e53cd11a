import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { BaseUrls } from '../lib/public-url.js';
import type { RequestContext } from '../security/client.js';

/** RFC 9110 §7.6.1 / RFC 7230 §6.1: hop-by-hop fields, never forwarded. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];
/** Fields the gateway owns towards the upstream: whatever the client sent under these names is dropped. */
const GATEWAY_OWNED = [
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-real-ip',
  'x-request-id',
  'expect',
];
/** Fields of the upstream's response that say too much about it. */
const RESPONSE_DROPPED = ['server', 'x-powered-by'];

const REQUEST_DROPPED = new Set([...HOP_BY_HOP, ...GATEWAY_OWNED]);
const RESPONSE_DROPPED_ALL = new Set([...HOP_BY_HOP, ...RESPONSE_DROPPED]);

/** Every field named in Connection (RFC 9110 §7.6.1): dropped along with the hop-by-hop ones. */
function connectionNamed(connection: unknown): Set<string> | undefined {
  if (typeof connection !== 'string') return undefined;
  // The usual value (an upstream's keep-alive) names nothing beyond the hop-by-hop fields dropped anyway.
  if (connection.length === 10 && connection.toLowerCase() === 'keep-alive') return undefined;
  const names = new Set<string>();
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
}

/**
 * The headers the upstream receives, as a new object (the request's own stay as the client sent them): the
 * client's, minus every field named in Connection, the hop-by-hop ones, the ones the gateway owns
 * and (unless the rule says otherwise) Authorization; then ours. Ours come last, so a client
 * cannot name them in Connection to make us drop them. Built by copying rather than deleting:
 * deleting keys turns the object into a slow dictionary for everything that reads it after.
 */
export function upstreamHeaders(
  headers: IncomingHttpHeaders,
  ctx: RequestContext,
  forwardAuthorization: boolean,
  publicHost: string | undefined,
): IncomingHttpHeaders {
  const named = connectionNamed(headers.connection);
  const out: IncomingHttpHeaders = {};
  for (const name in headers) {
    if (REQUEST_DROPPED.has(name) || named?.has(name) || lookalike(name)) continue;
    if (name === 'authorization' && !forwardAuthorization) continue;
    out[name] = headers[name];
  }
  const peer = ctx.connection.peerText;
  out['x-forwarded-for'] = ctx.forwardedChain.length > 0 ? `${ctx.forwardedChain.join(', ')}, ${peer}` : peer;
  out['x-forwarded-proto'] = ctx.proto;
  // The configured public host when there is one: an upstream that builds links from it must not
  // be handed whatever Host the client chose.
  const host = publicHost ?? headers.host;
  if (host !== undefined) out['x-forwarded-host'] = host;
  out['x-request-id'] = ctx.id;
  return out;
}

/**
 * Headers that other software reads as forwarding or routing information: any other
 * `x-forwarded-*`, the IIS/Symfony rewrite headers, and any name with `_`, which CGI, WSGI and
 * Rack fold into `-` (so `x_forwarded_for` would become a second X-Forwarded-For; nginx drops
 * such names by default for the same reason).
 */
function lookalike(name: string): boolean {
  return name.includes('_') || name.startsWith('x-forwarded-') || name === 'x-original-url' || name === 'x-rewrite-url';
}

/** The upstream's response headers as the client gets them: same hygiene, Location rewritten, our request id. */
export function prepareResponseHeaders(upstream: IncomingHttpHeaders, requestId: string, urls: BaseUrls): OutgoingHttpHeaders {
  const named = connectionNamed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    if (RESPONSE_DROPPED_ALL.has(name) || named?.has(name)) continue;
    const v = upstream[name];
    out[name] = (name === 'location' || name === 'content-location') && typeof v === 'string' ? urls.toPublic(v) : v;
  }
  out['x-request-id'] = requestId;
  return out;
}
