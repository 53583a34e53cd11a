import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Interaction } from '../fhir/interaction.js';
import { refusalCode, refusalStatus } from '../lib/respond.js';
import { AccessLineWriter } from '../logging/logger.js';
import type { Principal } from '../security/checks.js';
import type { RequestContext } from '../security/client.js';
import { NO_METRICS, type ExchangeOutcome, type Metrics } from '../telemetry/metrics.js';
import { endSpan } from '../telemetry/tracing.js';
import { onExchangeEnd, type EndListener } from '../lib/exchange-end.js';

/** What the access line says about one request, filled in as the flow learns it. */
export interface AccessRecord {
  readonly id: string;
  ctx: RequestContext | undefined;
  /** What the request turned out to be (a Bundle's type once its body was read: transaction, not batch). */
  interaction: Interaction | undefined;
  /** The catalogue code when the gateway refused the request. */
  code: string | undefined;
  /** Who the request was authorized as (the audit trail's `who`). */
  principal?: Principal;
  /** A signed file URL that verified: which key signed it, under which policy (the audit trail's `who`). */
  signedUrl?: { readonly keyId: string; readonly policy?: string; readonly url: string };
  /** The request's server span, when tracing is on. */
  readonly span: Span | undefined;
  /** performance.now() when the request head was handed to the gateway. */
  readonly startedAt: number;
}

/** The status logged for an exchange that did not complete (nginx's "client closed request"). */
const ABORTED = 499;

/**
 * One access line per request, written when the exchange closes (not when it finishes: one cut
 * short, by the client or the upstream, gets its line too), and the exchange's figures for the
 * metrics. Never headers, query strings (search parameters are PHI), bodies or tokens: who asked
 * is the token's `sub` and client id.
 */
export class AccessLog {
  private readonly log: AccessLineWriter;
  /** One function for every exchange's end (no closure per request). */
  private readonly onEnd: EndListener<AccessRecord> = (res, rec) => this.ended(rec, res);

  constructor(
    parent: Logger,
    private readonly metrics: Metrics = NO_METRICS,
  ) {
    this.log = new AccessLineWriter(parent);
  }

  set level(level: string) {
    this.log.level = level;
  }

  /** Starts the record of a request; its line is written when `res` closes. */
  start(id: string, res: ServerResponse, span?: Span): AccessRecord {
    const rec: AccessRecord = { id, ctx: undefined, interaction: undefined, code: undefined, span, startedAt: performance.now() };
    if (span || this.metrics.enabled || this.log.on) {
      this.metrics.exchangeStarted();
      onExchangeEnd(res, this.onEnd, rec);
    }
    return rec;
  }

  /** The exchange is over: its line and its figures. */
  ended(rec: AccessRecord, res: ServerResponse): void {
    const { ctx, interaction: i } = rec;
    // An exchange that ended before its answer was complete (the client left, or the answer was
    // cut) is 499, as nginx logs it, never the 200 Node defaults to; a head that went out is kept.
    const finished = res.writableFinished;
    const status = finished ? res.statusCode : ABORTED;
    const code = rec.code ?? refusalCode(res);
    const seconds = (performance.now() - rec.startedAt) / 1000;
    const { bytesIn, bytesOut } = connectionShare(res.socket ?? res.req.socket);
    const carried = refusalStatus(res);
    if (rec.span) endServerSpan(rec.span, rec, status, code, finished, carried);
    if (this.metrics.enabled && ctx) contentFigures(ctx, this.metrics);
    if (this.metrics.enabled)
      this.metrics.exchangeEnded({
        interaction: i?.kind ?? 'unclassified',
        // A GraphQL answer is a 200 that may carry a refusal or a failure: judged by the error it
        // carries, as the audit trail judges it.
        outcome: metricOutcome(finished, carried ?? status, code),
        status,
        code,
        seconds,
        bytesIn,
        bytesOut,
      });
    if (!this.log.on) return;
    const claims = rec.principal?.token?.claims;
    const sub = typeof claims?.['sub'] === 'string' ? claims['sub'].slice(0, 256) : undefined;
    const client = claims?.['client_id'] ?? claims?.['azp'] ?? claims?.['cid'];
    const traceId = rec.span?.spanContext().traceId;
    // Put together directly, field by field in a fixed order (see AccessLineWriter for why). What
    // the gateway makes (its ids, addresses, codes, numbers) goes in as it is; what a client
    // chose (token claims, the URL's type, id and operation) is JSON-escaped.
    let line = `,"reqId":"${rec.id}"`;
    if (traceId) line += `,"traceId":"${traceId}"`;
    // The peer's text is kept with its connection: formatted once, not per line.
    if (ctx) line += `,"client":"${ctx.clientIp === ctx.connection.peerIp ? ctx.connection.peerText : ctx.clientIp.toString()}"`;
    if (sub) line += `,"sub":${JSON.stringify(sub)}`;
    if (typeof client === 'string') line += `,"clientId":${JSON.stringify(client.slice(0, 256))}`;
    // Refused before it was classified (a path that is not FHIR, a malformed head): still which method.
    line += `,"method":"${i?.method ?? res.req.method}"`;
    if (i) {
      line += `,"interaction":"${i.kind}"`;
      if (i.resourceType) line += `,"resourceType":${JSON.stringify(i.resourceType)}`;
      if (i.id) line += `,"id":${JSON.stringify(i.id)}`;
      if (i.operation) line += `,"operation":${JSON.stringify(i.operation)}`;
    }
    line += `,"status":${status}`;
    if (code) line += `,"code":"${code}"`;
    if (!finished) line += res.headersSent && bytesOut > 0 ? `,"aborted":true,"statusSent":${res.statusCode}` : `,"aborted":true`;
    this.log.write(`${line},"bytesIn":${bytesIn},"bytesOut":${bytesOut},"ms":${Math.round(seconds * 10_000) / 10}`);
  }
}

const kCounted = Symbol('fhir-binary-gateway.counted');
type Counted = Socket & { [kCounted]?: { read: number; written: number } };

/**
 * The connection's bytes since the last exchange on it ended: this exchange's head and body both
 * ways (a body Node read together with the head is counted too, which a difference taken from
 * the start of the exchange would miss).
 */
function connectionShare(socket: Counted | null | undefined): { bytesIn: number; bytesOut: number } {
  if (!socket) return { bytesIn: 0, bytesOut: 0 };
  const seen = (socket[kCounted] ??= { read: 0, written: 0 });
  const read = socket.bytesRead;
  const written = socket.bytesWritten;
  const share = { bytesIn: read - seen.read, bytesOut: written - seen.written };
  seen.read = read;
  seen.written = written;
  return share;
}

/** The stored content the exchange moved, from its blob events (the audit trail's). */
function contentFigures(ctx: RequestContext, metrics: Metrics): void {
  for (const e of ctx.blobEvents ?? []) {
    if (!e.bytes) continue;
    if (e.action === 'write') metrics.content('stored', e.bytes);
    else if (e.action === 'read') metrics.content(e.inflated ? 'inflated' : 'served', e.bytes);
  }
  if (ctx.inlineServed) metrics.content('inline', ctx.inlineServed.bytes);
}

/** The request's span, named by what the request was (known only now: a Bundle's type comes from its body). */
function endServerSpan(
  span: Span,
  rec: AccessRecord,
  status: number,
  code: string | undefined,
  finished: boolean,
  carried: number | undefined,
): void {
  const i = rec.interaction;
  if (i) span.updateName(`${i.kind}${i.resourceType ? ` ${i.resourceType}` : ''}${i.operation ? ` $${i.operation}` : ''}`);
  span.setAttributes({
    'fbg.request_id': rec.id,
    ...(i ? { 'fhir.interaction': i.kind } : {}),
    ...(i?.resourceType ? { 'fhir.resource_type': i.resourceType } : {}),
    ...(code ? { 'fbg.code': code } : {}),
    ...(finished ? {} : { 'fbg.aborted': true }),
  });
  // The HTTP status as sent; a 5xx carried in a 200 (a GraphQL field error) still marks the span failed.
  if (carried !== undefined && carried >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: code ?? 'failed' });
  endSpan(span, status);
}

/**
 * For the metrics, an answer the upstream refused (a 4xx: not found, a conflict, a bad search) is
 * `rejected`, apart from `failed` (5xx: the upstream's fault or ours): an error-rate alert on
 * `failed` does not fire on ordinary 404s.
 */
function metricOutcome(finished: boolean, status: number, code: string | undefined): ExchangeOutcome {
  const outcome = outcomeOf(finished, status, code);
  return outcome === 'failed' && status < 500 ? 'rejected' : outcome;
}

/** As the audit trail says it: refused (the gateway said no), failed (an error), aborted (cut), success. */
export function outcomeOf(finished: boolean, status: number, code: string | undefined): Exclude<ExchangeOutcome, 'rejected'> {
  if (!finished) return 'aborted';
  if (code && status < 500) return 'refused';
  return status >= 400 ? 'failed' : 'success';
}
