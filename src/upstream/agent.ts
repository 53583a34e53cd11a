import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type { GatewayConfig } from '../config/types.js';
import { GatewayError } from '../errors/catalogue.js';

type CreateConnection = (options: object, callback: (err: Error | null, socket: Duplex) => void) => Duplex | undefined;

/**
 * The keep-alive connection pool to the upstream, shared by forwarded traffic and the gateway's
 * own requests: one place holds the upstream's sockets, and both kinds reuse them.
 */
export function upstreamAgent(base: string, upstream: GatewayConfig['upstream']): http.Agent {
  const options = { keepAlive: true, maxSockets: upstream.maxSockets, maxFreeSockets: upstream.maxSockets, scheduling: 'lifo' as const };
  const agent =
    new URL(base).protocol === 'https:'
      ? new https.Agent({ ...options, rejectUnauthorized: upstream.rejectUnauthorized })
      : new http.Agent(options);
  return withConnectTimeout(agent, upstream.connectTimeoutMs);
}

/**
 * upstream.connectTimeoutMs, on the pool's new connections: a connection (TCP, and the TLS
 * handshake for an HTTPS upstream) not made in time is destroyed with UPSTREAM_UNAVAILABLE, which
 * fails the request waiting for it (forwarded or the gateway's own). Per connection, not per
 * request: a request on a pooled connection arms nothing.
 */
export function withConnectTimeout<A extends http.Agent>(agent: A, timeoutMs: number): A {
  const a = agent as unknown as { createConnection: CreateConnection };
  const create = a.createConnection;
  a.createConnection = function (this: unknown, options, callback) {
    const socket = create.call(this, options, callback);
    if (socket && (socket as { connecting?: boolean }).connecting) {
      const timer = setTimeout(
        () => socket.destroy(new GatewayError('UPSTREAM_UNAVAILABLE', `connect timeout (${timeoutMs} ms)`)),
        timeoutMs,
      );
      const clear = (): void => clearTimeout(timer);
      // Over TLS the connection is made when the handshake is done: an upstream that accepts TCP
      // and never speaks TLS would otherwise hold the request with no timer at all.
      socket.once((socket as { encrypted?: boolean }).encrypted === true ? 'secureConnect' : 'connect', clear);
      socket.once('close', clear);
    }
    return socket;
  };
  return agent;
}
