import type { IncomingMessage, ServerResponse } from 'node:http';
import Fastify, { type FastifyServerFactory } from 'fastify';
import { GatewayError } from '../errors.js';
import { errorFormat, renderOutcome } from '../fhir/operation-outcome.js';
import { toGatewayError } from './respond.js';

export interface AppOptions {
  readonly serverFactory: FastifyServerFactory;
  /** Whether the upstream answers; backs /readyz. */
  readonly upstreamReady: () => Promise<boolean>;
}

/**
 * The fastify app for what the gateway serves itself (health now; the binary plane next).
 * Requests reach it from Gateway after the request flow, never around it.
 */
export function buildApp(opts: AppOptions) {
  const app = Fastify({ serverFactory: opts.serverFactory, logger: false, return503OnClosing: true });

  const reply = (res: { code: (n: number) => unknown; header: (k: string, v: string) => unknown }, err: GatewayError, accept: string | undefined, query: string) => {
    const { body, contentType } = renderOutcome(err, undefined, errorFormat(accept, query));
    res.code(err.status);
    res.header('content-type', contentType);
    for (const [k, v] of Object.entries(err.headers)) res.header(k, v);
    return body;
  };

  app.setNotFoundHandler((req, res) => reply(res, new GatewayError('NOT_FOUND'), req.headers.accept, ''));
  app.setErrorHandler((err, req, res) => reply(res, toGatewayError(err), req.headers.accept, ''));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    if (await opts.upstreamReady()) return { status: 'ready' };
    res.code(503);
    return { status: 'upstream unreachable' };
  });
  return app;
}

export type RoutingFn = (req: IncomingMessage, res: ServerResponse) => void;
