import http from 'node:http';
import https from 'node:https';
import type { GatewayConfig } from '../config/types.js';

/**
 * The keep-alive connection pool to the upstream, shared by forwarded traffic and the gateway's
 * own requests: one place holds the upstream's sockets, and both kinds reuse them.
 */
export function upstreamAgent(base: string, upstream: GatewayConfig['upstream']): http.Agent {
  const options = { keepAlive: true, maxSockets: upstream.maxSockets, maxFreeSockets: upstream.maxSockets, scheduling: 'lifo' as const };
  return new URL(base).protocol === 'https:'
    ? new https.Agent({ ...options, rejectUnauthorized: upstream.rejectUnauthorized })
    : new http.Agent(options);
}
