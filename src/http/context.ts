import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { GatewayError } from '../errors.js';
import { inRanges, parseAddress, type Address, type Range } from '../security/ip.js';
import type { RewriteParams } from './response-params.js';
import type { TokenCacheEntry } from '../security/jwt.js';
import type { ScopeSet } from '../security/scopes.js';

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
   * The last bearer token accepted on this connection (security/pipeline.ts). A request with the
   * same Authorization header reuses it after a cheap revalidation, instead of hashing a long
   * token into the verifier's cache again. Compared by the whole header, so a proxy multiplexing
   * many users over one connection only ever gets each user's own token back.
   */
  bearer: { readonly header: string; readonly entry: TokenCacheEntry; readonly scopes: ScopeSet } | undefined;
}

/** What the gateway knows about a request before it looks at the FHIR interaction. */
export interface RequestContext {
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
  readonly startedAt: number;
  /** How answers to this request are rewritten (the matched rule's inflate settings and the client's `_inflate`); set at dispatch. */
  rewrite: RewriteParams | undefined;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const kConnection = Symbol('fhir-binary-gateway.connection');

/**
 * Headers whose meaning the gateway checks or relies on (X-Security-Context: the binary plane's
 * access-control proxy). Naming one in Connection would make us (RFC 9110 §7.6.1) strip it
 * before the upstream, so the upstream would act on a request that differs from the one we
 * checked: refused.
 */
const NOT_HOP_BY_HOP = new Set([
  'authorization',
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'if-none-exist',
  'x-security-context',
]);

export function rejectConnectionNamed(connection: string | undefined): void {
  if (connection === undefined) return;
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (NOT_HOP_BY_HOP.has(name)) throw new GatewayError('BAD_REQUEST', `Connection must not name ${name}`);
  }
}

/** Header names buildContext reads, by length first: most headers are skipped without lowercasing. */
const SCANNED_LENGTHS = new Set([4, 9, 12, 13, 14, 15, 17]);

interface ScannedHeaders {
  xff: string[] | undefined;
  realIp: string[] | undefined;
  xfp: string[] | undefined;
}

/**
 * One pass over the raw headers (Node's req.headers has already merged or dropped repeats):
 * refuses a repeated Authorization, Host, Content-Length or Content-Type (Node keeps one of them,
 * the upstream may keep the other: request smuggling, auth confusion) and collects the
 * forwarding headers, split on commas.
 */
export function scanHeaders(raw: readonly string[]): ScannedHeaders {
  const out: ScannedHeaders = { xff: undefined, realIp: undefined, xfp: undefined };
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (!SCANNED_LENGTHS.has(name.length)) continue;
    const lname = name.toLowerCase();
    let bit = 0;
    switch (lname) {
      case 'authorization':
        bit = 1;
        break;
      case 'host':
        bit = 2;
        break;
      case 'content-length':
        bit = 4;
        break;
      case 'content-type':
        bit = 8;
        break;
      case 'x-forwarded-for':
        (out.xff ??= []).push(...raw[i + 1].split(',').map((v) => v.trim()));
        continue;
      case 'x-real-ip':
        (out.realIp ??= []).push(...raw[i + 1].split(',').map((v) => v.trim()));
        continue;
      case 'x-forwarded-proto':
        (out.xfp ??= []).push(...raw[i + 1].split(',').map((v) => v.trim()));
        continue;
      default:
        continue;
    }
    if (seen & bit) throw new GatewayError('DUPLICATE_HEADER', lname);
    seen |= bit;
  }
  return out;
}

function strictAddress(text: string, header: string): Address {
  const a = parseAddress(text);
  if (!a) throw new GatewayError('BAD_FORWARDED_HEADER', `${header} holds a value that is not a canonical IP address`);
  return a;
}

/** A sane incoming X-Request-Id is kept (so ids follow a request across systems), anything else replaced. */
export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export function buildContext(req: IncomingMessage, trustedProxies: readonly Range[], id: string): RequestContext {
  const scanned = scanHeaders(req.rawHeaders);
  rejectConnectionNamed(req.headers.connection);

  // Parsed once per connection: keep-alive clients send many requests on one socket.
  const socket = req.socket as Socket & { [kConnection]?: Connection };
  let connection = socket[kConnection];
  if (!connection) {
    const remote = socket.remoteAddress;
    const parsed = remote ? parseAddress(remote) : undefined;
    // A socket with no address (already closed) cannot be placed in any range: refuse.
    if (!parsed) throw new GatewayError('FORBIDDEN', 'client address unknown');
    connection = { peerIp: parsed, peerText: parsed.toString(), bearer: undefined };
    socket[kConnection] = connection;
  }
  const peerIp = connection.peerIp;
  const peerTrusted = trustedProxies.length > 0 && inRanges(peerIp, trustedProxies);

  // Values are validated whoever sent them: a non-canonical address is refused in any header we read.
  const xff = scanned.xff;
  const xffAddrs = xff?.map((v) => strictAddress(v, 'X-Forwarded-For'));
  const realIp = scanned.realIp;
  realIp?.forEach((v) => strictAddress(v, 'X-Real-IP'));

  let clientIp = peerIp;
  let forwardedChain: string[] = [];
  let proto: 'http' | 'https' = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  if (peerTrusted) {
    if (xffAddrs && xffAddrs.length > 0) {
      // Walk right to left through trusted hops; the first untrusted one is the client.
      let i = xffAddrs.length - 1;
      while (i > 0 && inRanges(xffAddrs[i], trustedProxies)) i--;
      clientIp = xffAddrs[i]!;
      forwardedChain = xff!.slice(i);
    }
    const xfp = scanned.xfp;
    if (xfp && xfp.length > 0 && proto === 'http') {
      const last = xfp[xfp.length - 1].toLowerCase();
      if (last !== 'http' && last !== 'https') throw new GatewayError('BAD_FORWARDED_HEADER', 'X-Forwarded-Proto');
      proto = last;
    }
  }

  return {
    id,
    clientIp,
    peerIp,
    connection,
    peerTrusted,
    forwardedChain,
    secure: proto === 'https',
    proto,
    startedAt: performance.now(),
    rewrite: undefined,
  };
}
