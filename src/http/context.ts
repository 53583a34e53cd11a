import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { Range } from '../lib/ip.js';
import { clientContext, isPeerTrusted, type ForwardingHeaders, type RequestContext } from '../security/client.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

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

type ScannedHeaders = { -readonly [K in keyof ForwardingHeaders]: string[] | undefined };

/**
 * One pass over the raw headers (Node's req.headers has already merged or dropped repeats):
 * refuses a repeated Authorization, Host, Content-Length or Content-Type (Node keeps one of them,
 * the upstream may keep the other: request smuggling, auth confusion) and collects the
 * forwarding headers, split on commas.
 */
export function scanRawHeaders(raw: readonly string[]): ScannedHeaders {
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

/**
 * A sane incoming X-Request-Id is kept when a trusted proxy sent it (so ids follow a request
 * across systems); from anyone else, or insane, it is replaced. A client choosing the id its log
 * lines and audit records carry could forge or collide them (Envoy drops an edge client's id too).
 */
export function requestIdOf(req: IncomingMessage, trustedProxies: readonly Range[]): string {
  const incoming = req.headers['x-request-id'];
  if (typeof incoming !== 'string' || !REQUEST_ID.test(incoming)) return randomUUID();
  return isPeerTrusted(req.socket, trustedProxies) ? incoming : randomUUID();
}

/**
 * The request's context: its id, and who the client is (security/client.ts). Refuses what must
 * never reach the checks: a repeated header that must appear once, a Connection header naming
 * one the gateway relies on, forwarding headers that are not canonical addresses.
 */
export function buildContext(req: IncomingMessage, trustedProxies: readonly Range[], id: string): RequestContext {
  const forwarded = scanRawHeaders(req.rawHeaders);
  rejectConnectionNamed(req.headers.connection);
  return clientContext(id, req.socket, forwarded, trustedProxies);
}
