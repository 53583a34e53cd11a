import { context, trace } from '@opentelemetry/api';
import type * as HooksModule from '@opentelemetry/context-async-hooks';
import type * as OtlpModule from '@opentelemetry/exporter-trace-otlp-http';
import type * as ResourcesModule from '@opentelemetry/resources';
import type * as SdkModule from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import { ConfigError } from '../errors/catalogue.js';
import type { Metrics } from './metrics.js';

export interface TraceExportOptions {
  readonly endpoint: string;
  readonly serviceName: string;
  readonly sampleRatio: number;
}

/** One export's wait for the collector (the SDK's default is 10 s). */
const EXPORT_TIMEOUT_MS = 5_000;
/** What shutdown gives the last batch: spans not delivered by then are dropped, not waited for. */
const SHUTDOWN_MS = 2_000;

/**
 * `observability.tracing.exporter: otlp`: the process's tracer provider, exporting batches over
 * OTLP/HTTP, with the async-hooks context manager that lets the store's and the upstream's spans
 * find their request's. The SDK packages are optional dependencies, loaded only here: a gateway
 * without tracing never loads them. Parent-based sampling honours the client's sampled flag.
 */
export async function startTraceExport(
  opts: TraceExportOptions,
  log: Logger,
  metrics: Metrics,
): Promise<{ flush(): Promise<void>; shutdown(): Promise<void> }> {
  let sdk: typeof SdkModule;
  let otlp: typeof OtlpModule;
  let hooks: typeof HooksModule;
  let resources: typeof ResourcesModule;
  try {
    [sdk, otlp, hooks, resources] = await Promise.all([
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/context-async-hooks'),
      import('@opentelemetry/resources'),
    ]);
  } catch {
    throw new ConfigError([
      '/observability/tracing/exporter: otlp needs the optional packages @opentelemetry/sdk-trace-base, @opentelemetry/exporter-trace-otlp-http, @opentelemetry/context-async-hooks and @opentelemetry/resources (installed unless npm ran with --omit=optional)',
    ]);
  }
  const provider = new sdk.BasicTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': opts.serviceName }),
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(opts.sampleRatio) }),
    spanProcessors: [
      new sdk.BatchSpanProcessor(
        watched(new otlp.OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS }), opts, log, metrics),
        {
          exportTimeoutMillis: EXPORT_TIMEOUT_MS,
        },
      ),
    ],
  });
  context.setGlobalContextManager(new hooks.AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return {
    flush: () => provider.forceFlush(),
    async shutdown() {
      // Bounded: an unreachable collector must not stretch shutdown past the drain deadline.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        provider.shutdown().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log.warn({ waitedMs: SHUTDOWN_MS }, 'traces not exported at shutdown were dropped');
            resolve();
          }, SHUTDOWN_MS);
          timer.unref();
        }),
      ]);
      clearTimeout(timer);
      trace.disable();
      context.disable();
    },
  };
}

type Exporter = InstanceType<typeof OtlpModule.OTLPTraceExporter>;

/**
 * The exporter, with its failures made visible: the SDK drops a batch it cannot deliver without a
 * word. Logged when exports begin failing (with the collector's origin and why) and when they
 * work again, not per batch; every span dropped is counted (fbg_trace_spans_dropped_total).
 */
function watched(inner: Exporter, opts: TraceExportOptions, log: Logger, metrics: Metrics): SdkModule.SpanExporter {
  let dropped = 0;
  let failing = false;
  const collector = new URL(opts.endpoint).origin;
  metrics.observe('fbg_trace_spans_dropped_total', 'Spans the OTLP exporter could not deliver to the collector', 'counter', () => dropped);
  return {
    export(spans, done) {
      inner.export(spans, (result) => {
        if (result.code !== 0) {
          dropped += spans.length;
          if (!failing)
            log.warn(
              { collector, cause: String(result.error?.message ?? 'export failed').slice(0, 300) },
              'traces cannot be exported: spans dropped',
            );
          failing = true;
        } else if (failing) {
          failing = false;
          log.info({ collector }, 'traces are exported again');
        }
        done(result);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
  };
}
