import type { IncomingHttpHeaders } from 'node:http';
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span } from '@opentelemetry/api';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const NAME = 'fhir-binary-gateway';

/**
 * OpenTelemetry spans through the API package: whichever tracer provider and context manager the
 * process registered (the gateway's own OTLP exporter when `observability.tracing.exporter` is
 * otlp, or one the host set up) receives them. Off (the default), nothing is created and a
 * client's traceparent passes to the upstream as it came.
 *
 * W3C trace context is read and written here rather than through a registered propagator, so
 * the upstream gets this gateway's span as parent whatever the host registered.
 */
export class Tracing {
  constructor(readonly enabled: boolean) {}

  /** The server span of one request, child of the client's traceparent if it sent a valid one. */
  serverSpan(method: string, headers: IncomingHttpHeaders): Span | undefined {
    if (!this.enabled) return undefined;
    const parent = remoteParent(headers.traceparent);
    return trace
      .getTracer(NAME)
      .startSpan(`${method}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent ?? ROOT_CONTEXT);
  }

  /** Runs `fn` with `span` as the active span (its children, the store's and the upstream's calls, find it). */
  within<T>(span: Span | undefined, fn: () => T): T {
    return span ? context.with(trace.setSpan(context.active(), span), fn) : fn();
  }

  /** A child of the active span (client kind: a call the gateway makes), or undefined when off or outside a request. */
  child(name: string, attributes: Record<string, string | number> = {}): Span | undefined {
    if (!this.enabled) return undefined;
    const active = trace.getSpan(context.active());
    if (!active) return undefined;
    return trace.getTracer(NAME).startSpan(name, { kind: SpanKind.CLIENT, attributes }, context.active());
  }
}

/** The span as the upstream's parent: `headers.traceparent` replaced (tracestate passes as it came). */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-0${(c.traceFlags & TraceFlags.SAMPLED).toString(16)}`;
}

/** Ends a span with the outcome of what it timed. */
export function endSpan(span: Span | undefined, status: number | Error): void {
  if (!span) return;
  if (status instanceof Error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: status.message.slice(0, 200) });
  } else {
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

function remoteParent(header: string | string[] | undefined): Context | undefined {
  if (typeof header !== 'string') return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, { traceId: m[1], spanId: m[2], traceFlags: parseInt(m[3], 16) & 1, isRemote: true });
}

/** One call the gateway makes, timed and traced until it answers or fails. */
export interface CallTimer {
  end(outcome: number | Error): void;
}
