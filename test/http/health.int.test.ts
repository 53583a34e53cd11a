/**
 * /healthz (the process is up) and /readyz (the upstream answers), both served by the gateway
 * itself without a token and never forwarded.
 */
import t from 'tap';
import { makeKey, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { closedPort, outcomeCode, startRecordingServer } from '../helpers/raw-http.js';
import { startFhirUpstream } from '../../src/demo/fhir-upstream.js';

// Auth stays required (baseline config): the health endpoints must not need a token anyway.
const jwks = await startJwksServer(t, [await makeKey('k1')]);

t.test('/healthz answers 200 without auth, whatever the upstream does', async (t) => {
  const port = await closedPort();
  const gw = await startTestGateway(t, { upstream: `http://127.0.0.1:${port}/fhir`, jwksUri: jwks.url });
  const res = await fetch(`${gw.url}/healthz`);
  t.equal(res.status, 200);
  t.same(await res.json(), { status: 'ok' });
  t.equal(res.headers.get('www-authenticate'), null);

  // Only the exact paths are ours; anything else is a FHIR request and needs a token.
  const other = await fetch(`${gw.url}/fhir/healthz`);
  t.equal(other.status, 404, 'no health endpoint under the FHIR base');
  t.equal(outcomeCode(await other.json()), 'NOT_FOUND');
});

t.test('/readyz is 200 when the upstream answers and 503 when it is down', async (t) => {
  // Started by hand (not helpers/upstream.ts): this test closes it early, and closing twice throws.
  const up = await startFhirUpstream();
  let upClosed = false;
  const closeUp = async () => {
    if (upClosed) return;
    upClosed = true;
    await up.close();
  };
  t.teardown(closeUp);
  // No answer kept: the probe after the upstream stops sees it.
  const gw = await startTestGateway(t, {
    upstream: up.url,
    jwksUri: jwks.url,
    config: { observability: { readiness: { intervalMs: 0 } } },
  });
  const ready = await fetch(`${gw.url}/readyz`);
  t.equal(ready.status, 200);
  t.same(await ready.json(), { status: 'ready' });
  t.ok(
    up.requests.some((r) => r.method === 'GET' && r.url === '/fhir/metadata'),
    'readiness is checked against the upstream capability statement',
  );
  t.notOk(
    up.requests.some((r) => r.url.includes('readyz')),
    '/readyz itself is not forwarded',
  );

  await closeUp();
  const down = await fetch(`${gw.url}/readyz`);
  t.equal(down.status, 503, 'not ready once the upstream is gone');
  t.match(await down.json(), {
    resourceType: 'OperationOutcome',
    issue: [{ code: 'transient', details: { coding: [{ code: 'NOT_READY' }] } }],
  });

  const health = await fetch(`${gw.url}/healthz`);
  t.equal(health.status, 200, 'still alive (liveness does not follow the upstream)');
});

t.test('/readyz is 503 when the upstream answers with a server error', async (t) => {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    res.writeHead(500, { 'content-type': 'application/fhir+json' });
    res.end('{"resourceType":"OperationOutcome","issue":[]}');
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  t.equal((await fetch(`${gw.url}/readyz`)).status, 503);
  t.equal(up.requests.length, 1);
});

t.test('/readyz is 503 when the upstream hangs (bounded wait)', async (t) => {
  const up = await startRecordingServer(t, (req) => {
    req.resume(); // never answer
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const started = Date.now();
  const res = await fetch(`${gw.url}/readyz`);
  t.equal(res.status, 503);
  t.ok(Date.now() - started < 5000, `answered in ${Date.now() - started} ms`);
});
