import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { mintToken } from '../helpers/auth.js';
import { codeOf, gqlJson, gqlUpload } from '../helpers/graphql.js';
import { createDocument } from '../helpers/lifecycle.js';
import { eventually } from '../helpers/poll.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

const OPS = { observability: { listen: { host: '127.0.0.1', port: 0 } } };

/** One sample of a Prometheus exposition: the value of `name` with exactly these labels (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] ?? '')
      .split(/,(?=[a-z_]+=")/)
      .filter(Boolean)
      .sort()
      .join(',');
    if (got === want) return Number(m[3]);
  }
  return 0;
}

t.test('after known traffic, /metrics on the observability listener counts it', async (t) => {
  const s = await stack(t, OPS);
  const ops = s.gw.observabilityUrl!;
  t.match(ops, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.match(
    s.gw.logs.lines.find((l) => l['msg'] === 'gateway listening'),
    { version: /^\d+\.\d+\.\d+/, store: 'filesystem', observability: ops, metrics: true, tracing: 'off' },
    "the start line says which build, which store and where the operators' endpoints are",
  );
  t.equal((await fetch(`${s.gw.url}/metrics`)).status, 404, 'never on the public port');

  const pdf = PDF(70_000);
  const created = await upload(s, pdf, 'application/pdf');
  t.equal(created.status, 201);
  await created.arrayBuffer();
  const id = createdId(created);
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(Buffer.from(await raw.arrayBuffer()).length, pdf.length);
  const doc = await createDocument(s, {}, t);
  const read = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, { headers: s.auth });
  t.equal(read.status, 200);
  await read.arrayBuffer();
  const refused = await fetch(`${s.gw.base}/Patient`);
  t.equal(refused.status, 401);
  await refused.arrayBuffer();
  const missing = await fetch(`${s.gw.base}/Patient/not-there`, { headers: s.auth });
  t.equal(missing.status, 404);
  await missing.arrayBuffer();
  await s.gw.accessLine(missing.headers.get('x-request-id'));
  // The exchanges' figures are taken when each one closes.
  await s.gw.accessLine(refused.headers.get('x-request-id'));

  const res = await fetch(`${ops}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  t.equal(sample(text, 'fbg_requests_total', { interaction: 'create', outcome: 'success', status: '2xx', code: '' }), 2, 'two creates');
  t.equal(sample(text, 'fbg_requests_total', { interaction: 'read', outcome: 'success', status: '2xx', code: '' }), 2, 'two reads');
  t.equal(sample(text, 'fbg_requests_total', { interaction: 'search', outcome: 'refused', status: '4xx', code: 'TOKEN_MISSING' }), 1);
  t.equal(
    sample(text, 'fbg_requests_total', { interaction: 'read', outcome: 'rejected', status: '4xx', code: '' }),
    1,
    "the upstream's 404: rejected, not failed",
  );
  t.equal(sample(text, 'fbg_request_duration_seconds_count', { interaction: 'create' }), 2);
  t.equal(sample(text, 'fbg_content_bytes_total', { kind: 'stored' }), 2 * pdf.length, 'both PDFs stored (each 70 kB + its header)');
  t.equal(sample(text, 'fbg_content_bytes_total', { kind: 'served' }), pdf.length, 'the raw read');
  t.equal(
    sample(text, 'fbg_content_bytes_total', { kind: 'inflated' }),
    2 * pdf.length,
    "the document inflated in its create's answer and its read",
  );
  t.ok(sample(text, 'fbg_upstream_duration_seconds_count', { interaction: 'create', status: '2xx' }) >= 2, 'upstream calls timed');
  t.ok(sample(text, 'fbg_store_operation_duration_seconds_count', { op: 'put' }) >= 2, 'store puts timed');
  t.equal(sample(text, 'fbg_store_errors_total', { op: 'put' }), 0);
  t.equal(sample(text, 'fbg_jwks_fetches_total', { outcome: 'ok' }), 1, 'the key set fetched once');
  t.ok(sample(text, 'fbg_token_cache_total', { result: 'hit' }) >= 3, 'the same token answered from the cache');
  t.equal(sample(text, 'fbg_token_cache_total', { result: 'miss' }), 1);
  t.equal(sample(text, 'fbg_inflight_exchanges'), 0, 'nothing under way');
  t.ok(sample(text, 'fbg_client_bytes_total', { direction: 'in' }) > 2 * pdf.length, 'bytes in');
  t.ok(sample(text, 'fbg_audit_queue_records') >= 0 && text.includes('fbg_audit_records_dropped_total 0'));
  t.match(text, /fbg_build_info\{version="\d+\.\d+\.\d+",node="[\d.]+"\} 1/);
  t.match(text, /fbg_process_cpu_seconds_total/, 'process figures too');
  t.notMatch(text, new RegExp(id), 'no resource id in any label');
});

t.test('a GraphQL answer (HTTP 200) is counted by the error it carries: a refusal as refused, a store failure as failed', async (t) => {
  const s = await stack(t, { ...OPS, graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  const counted = async (outcome: string, code: string) =>
    sample(await (await fetch(`${s.gw.observabilityUrl!}/metrics`)).text(), 'fbg_requests_total', {
      interaction: 'operation',
      outcome,
      status: '2xx',
      code,
    });

  const stored = await gqlUpload(s, auth, PDF(5_000));
  t.equal(codeOf(stored), undefined, 'an upload that works');
  const unknown = await gqlJson(s, auth, 'mutation($id: ID!) { refreshFileUrl(fileId: $id) { url } }', { id: 'f'.repeat(32) });
  t.equal(codeOf(unknown), 'NOT_FOUND');
  // The store cannot take a write: its directory is a file now.
  rmSync(s.gw.blobDir, { recursive: true, force: true });
  writeFileSync(s.gw.blobDir, 'not a directory');
  t.teardown(() => rmSync(s.gw.blobDir, { force: true }));
  const failed = await gqlUpload(s, auth, PDF(5_000));
  t.equal(codeOf(failed), 'STORAGE_UNAVAILABLE');
  t.equal(failed.errors?.[0]?.extensions?.status, 503);

  await eventually(async () => (await counted('failed', 'STORAGE_UNAVAILABLE')) === 1, 'the store failure: failed, by its 503');
  t.equal(await counted('refused', 'NOT_FOUND'), 1, 'the unknown file: refused, by its 404');
  t.equal(await counted('success', ''), 1, 'the upload that worked');
  t.equal(await counted('refused', 'STORAGE_UNAVAILABLE'), 0, 'a 5xx carried in a 200 is not a refusal');
});

t.test('readiness names each dependency; a failing one is named, logged once, and /readyz on the public port says which', async (t) => {
  // Every check gating, none kept: each probe below sees the change it follows.
  const s = await stack(t, {
    observability: { ...OPS.observability, readiness: { gating: ['upstream', 'store', 'jwks'], intervalMs: 0, storeIntervalMs: 0 } },
  });
  const ops = s.gw.observabilityUrl!;
  const ready = await fetch(`${ops}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), {
    status: 'ready',
    ready: true,
    checks: { upstream: { ok: true }, store: { ok: true }, jwks: { ok: true } },
  });
  t.same(await (await fetch(`${ops}/healthz`)).json(), { status: 'ok' });
  t.equal((await fetch(`${ops}/upstream/healthz`)).status, 200);
  t.equal((await fetch(`${s.gw.url}/readyz`)).status, 200);

  // The store cannot take a write (its claims directory replaced by a file): not ready, said why.
  rmSync(join(s.gw.blobDir, 'claims'), { recursive: true, force: true });
  writeFileSync(join(s.gw.blobDir, 'claims'), 'not a directory');
  const broken = await fetch(`${ops}/readyz`);
  t.equal(broken.status, 503);
  const report = (await broken.json()) as { checks: Record<string, { ok: boolean; error?: string }> };
  t.match(report.checks, { upstream: { ok: true }, store: { ok: false, error: /ENOTDIR|EEXIST/ }, jwks: { ok: true } });
  const pub = await fetch(`${s.gw.url}/readyz`);
  t.equal(pub.status, 503);
  const outcome = JSON.stringify(await pub.json());
  t.match(outcome, /NOT_READY/);
  t.match(outcome, /failing: store/);
  t.notMatch(outcome, /ENOTDIR|claims/, 'the public answer names the dependency, not the cause');
  await eventually(
    () => s.gw.logs.lines.find((l) => l['msg'] === 'not ready: a dependency check fails' && l['check'] === 'store'),
    'logged',
  );
  await (await fetch(`${ops}/readyz`)).arrayBuffer();
  t.equal(
    s.gw.logs.lines.filter((l) => l['msg'] === 'not ready: a dependency check fails').length,
    1,
    'logged when it began failing, not on every probe',
  );

  // Repaired: ready again, and said so.
  rmSync(join(s.gw.blobDir, 'claims'));
  // A failing answer is asked again after a second.
  await eventually(async () => (await fetch(`${ops}/readyz`)).status === 200, 'ready again');
  t.ok(s.gw.logs.lines.some((l) => l['msg'] === 'a dependency check passes again' && l['check'] === 'store'));

  // The upstream gone: the upstream checks fail.
  await s.up.close();
  Object.assign(s.up, { close: async () => undefined }); // closed already: the stack's teardown has nothing to do
  await new Promise((r) => setTimeout(r, 20));
  const down = await fetch(`${ops}/readyz`);
  t.equal(down.status, 503);
  t.match(await down.json(), { checks: { upstream: { ok: false, error: /fetch failed|ECONNREFUSED/ } } });
  t.equal((await fetch(`${ops}/upstream/healthz`)).status, 503);
});

t.test('answers stand for their interval: probes in a loop make no store writes', async (t) => {
  const s = await stack(t, OPS);
  const ops = s.gw.observabilityUrl!;
  t.match(await (await fetch(`${ops}/readyz`)).json(), { ready: true, checks: { store: { ok: true, gating: true } } });
  const claims = async () =>
    sample(await (await fetch(`${ops}/metrics`)).text(), 'fbg_store_operation_duration_seconds_count', { op: 'claim' });
  const before = await claims();
  for (let i = 0; i < 10; i++) t.equal((await fetch(`${s.gw.url}/readyz`)).status, 200);
  const report = (await (await fetch(`${ops}/readyz`)).json()) as { checks: { store: { ageMs: number } } };
  t.equal(await claims(), before, "probes in a loop make no store writes (nor are the probe's claims counted as traffic)");
  t.ok(report.checks.store.ageMs >= 0, 'the answer says how old it is');
});

t.test('gating narrowed to the upstream: a store that takes no write leaves the gateway ready but degraded', async (t) => {
  const s = await stack(t, { observability: { ...OPS.observability, readiness: { gating: ['upstream'], storeIntervalMs: 0 } } });
  const ops = s.gw.observabilityUrl!;
  rmSync(join(s.gw.blobDir, 'claims'), { recursive: true, force: true });
  writeFileSync(join(s.gw.blobDir, 'claims'), 'not a directory');
  const r = await fetch(`${ops}/readyz`);
  t.equal(r.status, 200, 'still in service');
  t.match(await r.json(), { ready: true, degraded: true, checks: { store: { ok: false, gating: false, error: /ENOTDIR|EEXIST/ } } });
  t.equal((await fetch(`${s.gw.url}/readyz`)).status, 200);
  await eventually(
    () => s.gw.logs.lines.find((l) => l['msg'] === 'degraded: a dependency check fails' && l['check'] === 'store'),
    'logged',
  );
});

t.test('reloads are counted, refused ones apart, and a change waiting for a restart is a gauge', async (t) => {
  const s = await stack(t, OPS);
  const scrape = async () => (await fetch(`${s.gw.observabilityUrl!}/metrics`)).text();
  const before = s.gw.settings.current.config;
  t.same(s.gw.reload(before), [], 'the same file: nothing waits for a restart');
  t.equal(sample(await scrape(), 'fbg_config_restart_pending'), 0);
  const moved = { ...before, upstream: { ...before.upstream, timeoutMs: before.upstream.timeoutMs + 1 } };
  t.same(s.gw.reload(moved), ['upstream.timeoutMs']);
  s.gw.reloadFailed();
  const text = await scrape();
  t.equal(sample(text, 'fbg_config_reloads_total'), 2);
  t.equal(sample(text, 'fbg_config_reload_failures_total'), 1);
  t.equal(sample(text, 'fbg_config_restart_pending'), 1, 'what runs is not what the file says until a restart');
});
