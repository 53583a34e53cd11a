// The gateway's own OTLP export (observability.tracing.exporter: otlp) against a real HTTP
// collector: batches arrive; a collector that is gone is logged once and its spans counted as
// dropped; shutdown waits for a collector that never answers no longer than its bound.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import t from 'tap';
import { createLogger } from '../../src/logging/logger.js';
import { PromMetrics } from '../../src/telemetry/metrics.js';
import { startTraceExport } from '../../src/telemetry/trace-export.js';
import { LogSink } from '../helpers/gateway.js';

async function collector(answer: boolean): Promise<{ server: Server; url: string; posts: string[] }> {
  const posts: string[] = [];
  const server = createServer((req, res) => {
    posts.push(`${req.method} ${req.url}`);
    req.resume();
    if (answer) req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, posts };
}

t.test('spans reach the collector; a collector gone is said once and counted; shutdown is bounded', async (t) => {
  const up = await collector(true);
  const sink = new LogSink();
  const metrics = new PromMetrics('0.0.0');
  const exp = await startTraceExport({ endpoint: up.url, serviceName: 'fbg-test', sampleRatio: 1 }, createLogger('info', sink), metrics);
  trace.getTracer('test').startSpan('one').end();
  await exp.flush();
  t.same(up.posts, ['POST /v1/traces'], 'the batch was posted to the endpoint');
  await new Promise<void>((r) => up.server.close(() => r()));

  for (let i = 0; i < 3; i++) trace.getTracer('test').startSpan(`lost ${i}`).end();
  await exp.flush().catch(() => undefined);
  trace.getTracer('test').startSpan('lost again').end();
  await exp.flush().catch(() => undefined);
  const warned = sink.lines.filter((l) => l['msg'] === 'traces cannot be exported: spans dropped');
  t.equal(warned.length, 1, 'logged once, not per batch');
  t.equal(warned[0]?.['collector'], new URL(up.url).origin, 'with the collector it could not reach');
  t.match((await metrics.scrape()).body, /fbg_trace_spans_dropped_total 4/, 'every dropped span counted');

  await exp.shutdown();

  const hung = await collector(false);
  t.teardown(() => hung.server.closeAllConnections());
  t.teardown(() => hung.server.close());
  const slow = await startTraceExport(
    { endpoint: hung.url, serviceName: 'fbg-test', sampleRatio: 1 },
    createLogger('info', sink),
    new PromMetrics('0.0.0'),
  );
  trace.getTracer('test').startSpan('stuck').end();
  void slow.flush().catch(() => undefined);
  const started = Date.now();
  await slow.shutdown();
  const took = Date.now() - started;
  t.ok(took < 4_000, `shutdown does not wait out the collector (${took} ms)`);
  t.ok(took >= 1_900, `it gave the last batch its time (${took} ms)`);
  t.ok(sink.lines.some((l) => l['msg'] === 'traces not exported at shutdown were dropped'));
  t.same(hung.posts, ['POST /v1/traces'], 'the last batch was on its way');
});
