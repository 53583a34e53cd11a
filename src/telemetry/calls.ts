import { NO_METRICS, type Metrics } from './metrics.js';
import { endSpan, traceparentOf, type CallTimer, type Tracing } from './tracing.js';

/**
 * The upstream calls' telemetry in one place, for both ways the gateway calls the upstream (the
 * forwarder's pass-through and the binary plane's own requests): latency to the response head by
 * interaction, and a client span whose context replaces the `traceparent` the upstream gets.
 */
export class UpstreamCalls {
  constructor(
    private readonly metrics: Metrics = NO_METRICS,
    private readonly tracing?: Tracing,
  ) {}

  /** Starts timing a call; `headers` (the upstream request's) get the span's traceparent. Undefined when nothing is watched. */
  begin(interaction: string, method: string, headers: Record<string, unknown>): CallTimer | undefined {
    // Every proxied request passes here: with nothing watched, nothing is allocated.
    if (!this.metrics.enabled && !this.tracing?.enabled) return undefined;
    const span = this.tracing?.child(`upstream ${method}`, { 'http.request.method': method, 'fhir.interaction': interaction });
    if (!this.metrics.enabled && !span) return undefined;
    if (span) headers['traceparent'] = traceparentOf(span);
    const started = performance.now();
    return {
      end: (outcome) => {
        this.metrics.upstream(interaction, (performance.now() - started) / 1000, outcome instanceof Error ? 'error' : outcome);
        endSpan(span, outcome);
      },
    };
  }
}
