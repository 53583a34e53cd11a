import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { GatewayError } from '../errors/catalogue.js';
import { inRanges, parseAddress, type Address, type Range } from '../lib/ip.js';
import type { BlobEventLog } from '../lib/blob-events.js';
import type { TokenCacheEntry } from './jwt.js';
import type { ScopeSet } from './scopes.js';

/**
 * What the gateway remembers about one client connection, kept on the socket: keep-alive
 * clients send many requests on one, and most of them the same bearer token.
 */
export interface Connection {
  /** The socket peer. */
  readonly peerIp: Address;
  /** peerIp as text (for X-Forwarded-For). */
  readonly peerText: string;
  /**
   * The last bearer token accepted on this connection (checks.ts, requireBearer). A request with the
   * same Authorization header reuses it after a cheap revalidation, instead of hashing a long
   * token into the verifier's cache again. Compared by the whole header, so a proxy multiplexing
   * many users over one connection only ever gets each user's own token back.
   */
  bearer:
    | { readonly header: string; readonly entry: TokenCacheEntry; readonly scopes: ScopeSet; readonly patient: string | undefined }
    | undefined;
}

/** What the gateway knows about a request before it looks at the FHIR interaction. */
export interface RequestContext extends BlobEventLog {
  readonly id: string;
  /** The client as the policy sees it: the socket peer, or the first untrusted hop of X-Forwarded-For. */
  readonly clientIp: Address;
  /** The socket peer, always. */
  readonly peerIp: Address;
  readonly connection: Connection;
  readonly peerTrusted: boolean;
  /** The X-Forwarded-For chain as accepted (only when the peer is a trusted proxy), oldest first. */
  readonly forwardedChain: readonly string[];
  readonly secure: boolean;
  /** The protocol the client used: https when TLS here or a trusted proxy says so. */
  readonly proto: 'http' | 'https';
}

/** The forwarding headers as sent, each split on commas (http/context.ts reads them). */
export interface ForwardingHeaders {
  readonly xff: readonly string[] | undefined;
  readonly realIp: readonly string[] | undefined;
  readonly xfp: readonly string[] | undefined;
}

const kConnection = Symbol('fhir-binary-gateway.connection');

function strictAddress(text: string, header: string): Address {
  const a = parseAddress(text);
  if (!a) throw new GatewayError('BAD_FORWARDED_HEADER', `${header} holds a value that is not a canonical IP address`);
  return a;
}

/** Whether the socket's peer is one of the trusted proxies (whose forwarding headers, and request ids, are taken). */
export function isPeerTrusted(socket: Socket, trustedProxies: readonly Range[]): boolean {
  return trustedProxies.length > 0 && inRanges(connectionOf(socket).peerIp, trustedProxies);
}

/** The socket's connection record, made once per connection: keep-alive clients send many requests on one socket. */
function connectionOf(socket: Socket & { [kConnection]?: Connection }): Connection {
  let connection = socket[kConnection];
  if (connection) return connection;
  const remote = socket.remoteAddress;
  const parsed = remote ? parseAddress(remote) : undefined;
  // A socket with no address (already closed) cannot be placed in any range: refuse.
  if (!parsed) throw new GatewayError('FORBIDDEN', 'client address unknown');
  connection = { peerIp: parsed, peerText: parsed.toString(), bearer: undefined };
  socket[kConnection] = connection;
  return connection;
}

/**
 * The context of request `id`: who the client is and how it reached us. The socket peer, unless the peer is a trusted proxy:
 * then X-Forwarded-For is walked right to left through trusted hops, and the first untrusted one
 * is the client; X-Forwarded-Proto from a trusted proxy says whether the client used HTTPS.
 * Forwarding headers are validated whoever sent them: a non-canonical address is refused in any
 * header we read, so nothing downstream can read it differently.
 */
export function clientContext(id: string, socket: Socket, forwarded: ForwardingHeaders, trustedProxies: readonly Range[]): RequestContext {
  const connection = connectionOf(socket);
  const peerIp = connection.peerIp;
  const peerTrusted = isPeerTrusted(socket, trustedProxies);
  const xff = forwarded.xff;
  const xffAddrs = xff?.map((v) => strictAddress(v, 'X-Forwarded-For'));
  forwarded.realIp?.forEach((v) => strictAddress(v, 'X-Real-IP'));

  let clientIp = peerIp;
  let forwardedChain: readonly string[] = [];
  let proto: 'http' | 'https' = (socket as TLSSocket).encrypted ? 'https' : 'http';
  if (peerTrusted) {
    if (xffAddrs && xffAddrs.length > 0) {
      let i = xffAddrs.length - 1;
      while (i > 0 && inRanges(xffAddrs[i], trustedProxies)) i--;
      clientIp = xffAddrs[i];
      forwardedChain = xff!.slice(i);
    }
    const xfp = forwarded.xfp;
    if (xfp && xfp.length > 0 && proto === 'http') {
      const last = xfp[xfp.length - 1].toLowerCase();
      if (last !== 'http' && last !== 'https') throw new GatewayError('BAD_FORWARDED_HEADER', 'X-Forwarded-Proto');
      proto = last;
    }
  }
  return { id, clientIp, peerIp, connection, peerTrusted, forwardedChain, secure: proto === 'https', proto };
}
