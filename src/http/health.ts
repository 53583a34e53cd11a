import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyServerFactory } from 'fastify';
import { GatewayError } from '../errors/catalogue.js';
import { toGatewayError } from '../errors/map.js';
import { renderOutcome } from '../errors/outcome.js';
import { outcomeFormat } from '../lib/accept.js';
import type { Readiness } from './readiness.js';

export interface AppOptions {
  readonly serverFactory: FastifyServerFactory;
  /** Backs /readyz: the upstream, the store and the keys (details on the observability listener only). */
  readonly readiness: Readiness;
}

/**
 * The fastify app for what the gateway serves itself: /healthz and /readyz. The request flow
 * (flow.ts) hands it those two paths before anything else; every other request goes through the
 * flow on node:http directly, so pass-through traffic pays nothing for routing it does not need.
 * It also answers requests Node's parser refuses.
 */
export function buildHealthApp(opts: AppOptions) {
  const app = Fastify({ serverFactory: opts.serverFactory, logger: false, return503OnClosing: true, clientErrorHandler });
  const reply = withOutcomes(app);
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (req, res) => {
    const report = await opts.readiness.report();
    if (report.ready) return { status: 'ready' };
    // Which dependency, not why: the causes (addresses, errors) are for the operators' listener and the log.
    const failing = Object.keys(report.checks).filter((k) => !report.checks[k].ok);
    const detail = report.draining ? 'shutting down' : `failing: ${failing.join(', ')}`;
    return reply(res, new GatewayError('NOT_READY', detail), req.headers.accept, '');
  });
  return app;
}

/** A fastify app's refusals as OperationOutcomes (404s and errors alike); returns the function that renders one. */
export function withOutcomes(app: FastifyInstance) {
  const reply = (
    res: { code: (n: number) => unknown; header: (k: string, v: string) => unknown },
    err: GatewayError,
    accept: string | undefined,
    query: string,
  ) => {
    const { body, contentType } = renderOutcome(err, undefined, outcomeFormat(accept, query));
    res.code(err.status);
    res.header('content-type', contentType);
    for (const [k, v] of Object.entries(err.headers)) res.header(k, v);
    return body;
  };

  app.setNotFoundHandler((req, res) => reply(res, new GatewayError('NOT_FOUND'), req.headers.accept, ''));
  app.setErrorHandler((err, req, res) => reply(res, appError(err), req.headers.accept, ''));
  return reply;
}

/**
 * An error in a fastify route as a catalogue error: fastify's own refusals of a request (a body
 * that is not JSON, an unsupported or too large one) keep their meaning; anything else not from
 * the catalogue is INTERNAL.
 */
export function appError(err: unknown): GatewayError {
  const e = err as { code?: unknown; statusCode?: unknown; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('FST_') && typeof e.statusCode === 'number' && e.statusCode < 500) {
    const code = e.statusCode === 415 ? 'UNSUPPORTED_MEDIA' : e.statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
    return new GatewayError(code, e.message?.slice(0, 200));
  }
  return toGatewayError(err);
}

/**
 * Requests Node's parser refuses (repeated Content-Length, Content-Length with Transfer-Encoding,
 * malformed framing, oversized heads) never reach a handler. Answer them as an OperationOutcome
 * like every other refusal (fastify's default writes its own JSON body), then close the
 * connection: whatever follows on it cannot be framed.
 */
function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // A response already on its way on this connection cannot be followed by another one.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const gwErr =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new GatewayError('HEADERS_TOO_LARGE')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new GatewayError('REQUEST_TIMEOUT')
        : new GatewayError('BAD_REQUEST', 'the request could not be parsed as HTTP/1.1');
  const status = gwErr.status;
  const { body } = renderOutcome(gwErr, undefined, 'json');
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
    'Content-Type: application/fhir+json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n';
  socket.end(head + body, () => socket.destroy());
}
