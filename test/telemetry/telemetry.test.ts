import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import t from 'tap';
import { Readiness } from '../../src/http/readiness.js';
import { createLogger } from '../../src/logging/logger.js';
import type { BlobStore } from '../../src/storage/blob-store.js';
import { instrumentStore } from '../../src/storage/instrumented.js';
import { UpstreamCalls } from '../../src/telemetry/calls.js';
import { NO_METRICS, PromMetrics } from '../../src/telemetry/metrics.js';
import { Tracing } from '../../src/telemetry/tracing.js';
import { LogSink } from '../helpers/gateway.js';

const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

t.test('tracing off: no span, nothing injected, the work still runs', async (t) => {
  const off = new Tracing(false);
  t.equal(off.serverSpan('GET', { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` }), undefined);
  t.equal(off.child('x'), undefined);
  t.equal(
    off.within(undefined, () => 42),
    42,
  );
  const headers: Record<string, unknown> = {};
  t.equal(new UpstreamCalls(NO_METRICS, off).begin('read', 'GET', headers), undefined, 'nothing watched: no timer');
  t.same(headers, {});
  t.equal(new UpstreamCalls(NO_METRICS).begin('read', 'GET', headers), undefined, 'no tracer at all: no timer either');
  const metrics = new PromMetrics('0.0.0');
  const timer = new UpstreamCalls(metrics).begin('search', 'GET', headers);
  t.ok(timer, 'metrics alone: a timer');
  timer!.end(200);
  t.same(headers, {}, 'metrics alone: no traceparent');
  t.match((await metrics.scrape()).body, /fbg_upstream_duration_seconds_count\{interaction="search",status="2xx"\} 1/);
});

t.test('a malformed or all-zero traceparent starts a new trace; a child needs an active span', async (t) => {
  const on = new Tracing(true);
  for (const bad of [
    `00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`,
    `00-${'a'.repeat(32)}-${'0'.repeat(16)}-01`,
    'junk',
    `01-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
  ]) {
    const span = on.serverSpan('GET', { traceparent: bad })!;
    t.equal((span as unknown as { parentSpanContext?: unknown }).parentSpanContext, undefined, bad);
    span.end();
  }
  t.equal(on.child('outside a request'), undefined);
  exporter.reset();
  const server = on.serverSpan('GET', {})!;
  await on.within(server, async () => {
    await new Promise((r) => setTimeout(r, 1));
    const headers: Record<string, unknown> = {};
    const timer = new UpstreamCalls(NO_METRICS, on).begin('read', 'GET', headers)!;
    t.match(headers['traceparent'], new RegExp(`^00-${server.spanContext().traceId}-[0-9a-f]{16}-01$`));
    timer.end(new Error('connect ECONNREFUSED'));
  });
  server.end();
  const call = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT)!;
  t.equal(call.status.code, 2, 'a failed call is an error span');
  t.equal(call.status.message, 'connect ECONNREFUSED');
});

t.test('the store wrapper times every call, counts failures, and passes the store through when nothing watches', async (t) => {
  const failing = {
    driver: 'fake',
    head: async () => undefined,
    delete: async () => {
      throw new Error('store down');
    },
  } as unknown as BlobStore;
  t.equal(instrumentStore(failing, NO_METRICS, new Tracing(false)), failing, 'unwrapped');
  const metrics = new PromMetrics('0.0.0');
  const store = instrumentStore(failing, metrics, new Tracing(false));
  t.equal(store.driver, 'fake');
  t.equal(await store.head('x'), undefined);
  await t.rejects(store.delete('x'), /store down/);
  const text = (await metrics.scrape()).body;
  t.match(text, /fbg_store_operation_duration_seconds_count\{op="head"\} 1/);
  t.match(text, /fbg_store_errors_total\{op="delete"\} 1/);
  t.notMatch(text, /fbg_store_errors_total\{op="head"\}/);
});

t.test('sweeps and figures read at scrape time', async (t) => {
  const metrics = new PromMetrics('1.2.3');
  metrics.sweep('done', { deleted: 2, kept: 0 });
  metrics.sweep('failed');
  let dropped = 5;
  metrics.observe('fbg_test_dropped_total', 'test', 'counter', () => dropped);
  metrics.observe('fbg_test_queue', 'test', 'gauge', () => 7);
  let text = (await metrics.scrape()).body;
  t.match(text, /fbg_sweeps_total\{result="done"\} 1/);
  t.match(text, /fbg_sweeps_total\{result="failed"\} 1/);
  t.match(text, /fbg_sweep_blobs_total\{action="deleted"\} 2/);
  t.notMatch(text, /action="kept"/, 'nothing counted for none');
  t.match(text, /fbg_test_dropped_total 5/);
  t.match(text, /fbg_test_queue 7/);
  dropped = 9;
  text = (await metrics.scrape()).body;
  t.match(text, /fbg_test_dropped_total 9/, 'the total as it is now');
  // The disabled set does nothing, whatever it is told.
  NO_METRICS.exchangeStarted();
  NO_METRICS.observe('x', 'y', 'gauge', () => 1);
  t.equal(NO_METRICS.enabled, false);
});

t.test('readiness: a check that hangs fails at its timeout; draining is never ready; one check alone', async (t) => {
  const sink = new LogSink();
  const r = new Readiness(
    {
      upstream: { run: async () => undefined, ttlMs: 0 },
      slow: { run: () => new Promise(() => undefined), ttlMs: 0 },
      broken: {
        run: async () => {
          throw Object.assign(new Error('refused'), { code: 'ECONNREFUSED', cause: new Error('127.0.0.1:9') });
        },
        ttlMs: 0,
      },
    },
    createLogger('info', sink),
  );
  const report = await r.report();
  t.equal(report.ready, false);
  t.match(report.checks, {
    upstream: { ok: true, gating: true },
    slow: { ok: false, error: 'no answer in 2000 ms' },
    broken: { ok: false, error: 'ECONNREFUSED refused: 127.0.0.1:9' },
  });
  const first = r.report();
  t.equal(r.report(), first, 'probes while a round is under way share it');
  await first;
  t.match(await r.one('upstream'), { ok: true });
  r.drain();
  t.match(await r.report(), { ready: false, draining: true });
  t.equal(sink.lines.filter((l) => l['msg'] === 'not ready: a dependency check fails').length, 2, 'each failing check logged once');
});

t.test('readiness: only gating checks make it unready, the others degraded; answers stand for their TTL', async (t) => {
  const sink = new LogSink();
  const runs = { upstream: 0, store: 0 };
  let storeFails = false;
  const r = new Readiness(
    {
      upstream: { run: async () => void runs.upstream++, ttlMs: 60_000 },
      store: {
        run: async () => {
          runs.store++;
          if (storeFails) throw new Error('read-only');
        },
        ttlMs: 0,
      },
    },
    createLogger('info', sink),
    ['upstream'],
  );
  t.match(await r.report(), { ready: true, checks: { upstream: { ok: true, gating: true }, store: { ok: true, gating: false } } });
  for (let i = 0; i < 5; i++) await r.report();
  t.equal(runs.upstream, 1, 'a passing answer stands for its TTL: probes in a loop cost nothing');
  t.match((await r.report()).checks.upstream, { ageMs: Number });
  storeFails = true;
  const degraded = await r.report();
  t.match(degraded, { ready: true, degraded: true, checks: { store: { ok: false, error: 'read-only', gating: false } } });
  const asked = runs.store;
  await r.report();
  t.equal(runs.store, asked, 'a failing answer is asked again only after a second');
  t.ok(sink.lines.some((l) => l['msg'] === 'degraded: a dependency check fails' && l['check'] === 'store'));
});
