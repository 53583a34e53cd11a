import { context, trace } from '@opentelemetry/api';
import type * as HooksModule from '@opentelemetry/context-async-hooks';
import type * as OtlpModule from '@opentelemetry/exporter-trace-otlp-http';
import type * as ResourcesModule from '@opentelemetry/resources';
import type * as SdkModule from '@opentelemetry/sdk-trace-base';
import { ConfigError } from '../errors/catalogue.js';

export interface TraceExportOptions {
  readonly endpoint: string;
  readonly serviceName: string;
  readonly sampleRatio: number;
}

/**
 * `observability.tracing.exporter: otlp`: the process's tracer provider, exporting batches over
 * OTLP/HTTP, with the async-hooks context manager that lets the store's and the upstream's spans
 * find their request's. The SDK packages are optional dependencies, loaded only here: a gateway
 * without tracing never loads them. Parent-based sampling honours the client's sampled flag.
 */
export async function startTraceExport(opts: TraceExportOptions): Promise<{ shutdown(): Promise<void> }> {
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
    spanProcessors: [new sdk.BatchSpanProcessor(new otlp.OTLPTraceExporter({ url: opts.endpoint }))],
  });
  context.setGlobalContextManager(new hooks.AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return {
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      context.disable();
    },
  };
}
