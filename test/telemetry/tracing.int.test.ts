import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import t from 'tap';
import { rmSync, writeFileSync } from 'node:fs';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack, upload } from '../helpers/binary-stack.js';
import { codeOf, gqlUpload } from '../helpers/graphql.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

// The host's tracer provider (exporter `none`: the gateway uses whatever the process registered),
// here an in-memory one, with the context manager that carries a request's span across awaits.
const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

t.test('a server span per request, child of the client’s; the upstream and store calls its children; traceparent propagated', async (t) => {
  const s = await stack(t, { observability: { tracing: { enabled: true, exporter: 'none' } } });
  exporter.reset();
  const r = await upload(s, PDF(70_000), 'application/pdf', { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01` });
  t.equal(r.status, 201);
  await r.arrayBuffer();
  const line = await s.gw.accessLine(r.headers.get('x-request-id'));
  t.equal(line['traceId'], CLIENT_TRACE, 'the access line carries the trace id');

  const spans = exporter.getFinishedSpans().filter((x) => x.spanContext().traceId === CLIENT_TRACE);
  const server = spans.find((x) => x.kind === SpanKind.SERVER);
  t.ok(server, 'a server span');
  t.equal(server!.name, 'create Binary', 'named by what the request turned out to be');
  t.equal(server!.parentSpanContext?.spanId, CLIENT_SPAN, "the client's span is its parent");
  t.match(server!.attributes, {
    'fbg.request_id': r.headers.get('x-request-id'),
    'fhir.interaction': 'create',
    'http.response.status_code': 201,
  });
  const serverId = server!.spanContext().spanId;
  const up = spans.find((x) => x.kind === SpanKind.CLIENT && x.name === 'upstream POST');
  t.ok(up, 'an upstream span');
  t.equal(up!.parentSpanContext?.spanId, serverId, "the server span's child");
  const puts = spans.filter((x) => x.name === 'store put');
  t.equal(puts.length, 1, 'the store write');
  t.equal(puts[0].parentSpanContext?.spanId, serverId);
  const posted = s.up.requests.find((q) => q.method === 'POST' && q.url.startsWith('/fhir/Binary'));
  t.equal(
    posted?.headers['traceparent'],
    `00-${CLIENT_TRACE}-${up!.spanContext().spanId}-01`,
    'the upstream gets the gateway span as parent',
  );

  // Pass-through too: a search goes to the upstream as the server span's child.
  exporter.reset();
  const search = await fetch(`${s.gw.base}/Patient?name=x`, { headers: s.auth });
  await search.arrayBuffer();
  await s.gw.accessLine(search.headers.get('x-request-id'));
  const fresh = exporter.getFinishedSpans();
  const root = fresh.find((x) => x.kind === SpanKind.SERVER)!;
  t.equal(root.parentSpanContext, undefined, 'no traceparent from the client: a new trace');
  const call = fresh.find((x) => x.name === 'upstream GET')!;
  t.equal(call.parentSpanContext?.spanId, root.spanContext().spanId);
  const searched = s.up.requests.filter((q) => q.url.startsWith('/fhir/Patient')).at(-1);
  t.equal(searched?.headers['traceparent'], `00-${root.spanContext().traceId}-${call.spanContext().spanId}-01`);
});

t.test('a GraphQL answer carrying a store failure (HTTP 200) ends its server span in error', async (t) => {
  const s = await stack(t, {
    observability: { tracing: { enabled: true, exporter: 'none' } },
    graphql: { enabled: true },
    signedUrls: signedUrlsConfig(urlKeys(t)),
  });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  exporter.reset();
  t.equal(codeOf(await gqlUpload(s, auth, PDF(5_000))), undefined);
  rmSync(s.gw.blobDir, { recursive: true, force: true });
  writeFileSync(s.gw.blobDir, 'not a directory');
  t.teardown(() => rmSync(s.gw.blobDir, { force: true }));
  t.equal(codeOf(await gqlUpload(s, auth, PDF(5_000))), 'STORAGE_UNAVAILABLE');
  const servers = exporter.getFinishedSpans().filter((x) => x.kind === SpanKind.SERVER);
  t.equal(servers.length, 2);
  t.same(
    servers.map((x) => [x.attributes['http.response.status_code'], x.status.code]),
    [
      [200, SpanStatusCode.UNSET],
      [200, SpanStatusCode.ERROR],
    ],
    'the HTTP status as sent; the carried 503 marks the second span failed',
  );
  t.equal(servers[1].attributes['fbg.code'], 'STORAGE_UNAVAILABLE');
});

t.test('tracing off: no spans, and the client’s traceparent reaches the upstream as it came', async (t) => {
  const s = await stack(t);
  exporter.reset();
  const sent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`;
  const r = await fetch(`${s.gw.base}/Patient?name=y`, { headers: { ...s.auth, traceparent: sent } });
  await r.arrayBuffer();
  const line = await s.gw.accessLine(r.headers.get('x-request-id'));
  t.notOk('traceId' in line);
  t.same(exporter.getFinishedSpans(), []);
  t.equal(s.up.requests.filter((q) => q.url.startsWith('/fhir/Patient')).at(-1)?.headers['traceparent'], sent);
});
