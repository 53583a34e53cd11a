import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayError } from '../errors/catalogue.js';
import { renderOutcome } from '../errors/outcome.js';
import { outcomeFormat } from './accept.js';

const kRefusal = Symbol('fhir-binary-gateway.refusal');

const kRefusalStatus = Symbol('fhir-binary-gateway.refusal-status');
type Marked = ServerResponse & { [kRefusal]?: string; [kRefusalStatus]?: number };

/** The catalogue code of the error this response was (or was cut for), wherever it was sent from. */
export function refusalCode(res: ServerResponse): string | undefined {
  return (res as Marked)[kRefusal];
}

/**
 * The status of the error an answer carries inside a 200 (a GraphQL field error): what the audit
 * trail judges its outcome by. Undefined where the error is the HTTP status itself.
 */
export function refusalStatus(res: ServerResponse): number | undefined {
  return (res as Marked)[kRefusalStatus];
}

/** Marks an answer that carries `err` in its body, not as its HTTP status (GraphQL's field errors). */
export function noteCarriedError(res: ServerResponse, err: { readonly code: string; readonly status: number }): void {
  (res as Marked)[kRefusal] = err.code;
  (res as Marked)[kRefusalStatus] = err.status;
}

/**
 * Writes an error as an OperationOutcome on a raw response, in the format the client prefers. If
 * the response has already started, the only honest thing left is to cut the connection so the
 * client sees a failure.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, err: GatewayError, requestId: string | undefined): void {
  (res as Marked)[kRefusal] = err.code;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  const { body, contentType } = renderOutcome(err, requestId, outcomeFormat(req.headers.accept, q < 0 ? '' : url.slice(q + 1)));
  const headers: Record<string, string | number> = {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...err.headers,
  };
  if (requestId) headers['x-request-id'] = requestId;
  // After a refusal the rest of the request body is not wanted; closing avoids reading it.
  // (A bodyless GET/HEAD is not yet `complete` when refused synchronously: keep those alive.
  // One that announced a body is refused for it, and that body could be endless.)
  const announcesBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (!req.complete && (announcesBody || (req.method !== 'GET' && req.method !== 'HEAD'))) headers['connection'] = 'close';
  res.writeHead(err.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
