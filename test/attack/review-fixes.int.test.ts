/**
 * Regression tests for the findings of the first security review, one per finding, named after it.
 */
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors/catalogue.js';
import { AUDIENCE, ISSUER, makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { closedPort, httpMessage, outcomeCode, portOf, RawConnection, rawRequest, startRecordingServer } from '../helpers/raw-http.js';
import { eventually, settled } from '../helpers/poll.js';
import { outcome } from './helpers.js';

const HOST = 'Host: gateway.test';

function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Open fds of this process (the gateway runs in it) that point at deleted spool files in `spoolDir`. */
function deletedSpoolFds(spoolDir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${spoolDir}/`) && target.endsWith('(deleted)')) out.push(target);
    } catch {
      // closed between readdir and readlink
    }
  }
  return out;
}

const batch = (n = 2) =>
  JSON.stringify({
    resourceType: 'Bundle',
    type: 'batch',
    entry: Array.from({ length: n }, (_, i) => ({ request: { method: 'GET', url: `Patient/p${i}` } })),
  });

t.test('review #1: a jwksFile rewritten in place and reloaded stops trusting the removed key', async (t) => {
  const up = await startRecordingServer(t);
  const a = await makeKey('a');
  const b = await makeKey('b');
  const dir = tempDir(t, 'fbg-rot-');
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [a.publicJwk] }));
  const config = { auth: { issuers: [ISSUER], audiences: [AUDIENCE], jwksFile } };
  const gw = await startTestGateway(t, { upstream: up.url, config });
  const readWith = (token: string) => outcome(fetch(`${gw.base}/Patient/p1`, { headers: { authorization: `Bearer ${token}` } }));
  const read = async (key: typeof a) => readWith(await mintToken(key, { claims: { scope: 'user/Patient.r' } }));
  const OK = [200, undefined];
  const UNTRUSTED = [401, 'INVALID_TOKEN'];
  const tokenA = await mintToken(a, { claims: { scope: 'user/Patient.r' } });
  t.same(await readWith(tokenA), OK, 'key a trusted (and its token now cached)');
  t.same(await read(b), UNTRUSTED, 'key b not yet');
  writeFileSync(jwksFile, JSON.stringify({ keys: [b.publicJwk] }));
  gw.reload(
    buildConfig(
      {
        server: { host: '127.0.0.1', port: 0, publicBaseUrl: 'http://gateway.test/fhir' },
        upstream: { url: up.url },
        ...config,
        defaultRule: { require: { https: false, auth: true, smart: true } },
      },
      '(test)',
      dir,
    ),
  );
  t.same(await readWith(tokenA), UNTRUSTED, 'the cached token of the removed key is refused');
  t.same(await read(a), UNTRUSTED, 'key a no longer trusted');
  t.same(await read(b), OK, 'key b trusted');
});

t.test('review #2: a client that closes right after sending a Bundle leaves no spool file and no open fd', async (t) => {
  const up = await startRecordingServer(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const auth = `Authorization: Bearer ${await mintToken(key, { claims: { scope: 'user/Patient.rs' } })}`;
  // Verify the token once so the JWKS fetch does not widen the window we test.
  await rawRequest(portOf(gw.url), httpMessage(['GET /fhir/Patient/p0 HTTP/1.1', HOST, auth]));
  const accessLines = () => gw.logs.lines.filter((l) => l['msg'] === 'request').length;
  const before = accessLines();
  for (let i = 0; i < 10; i++) {
    const conn = await RawConnection.connect(portOf(gw.url));
    const body = batch(3);
    await conn.write(
      httpMessage(
        ['POST /fhir HTTP/1.1', HOST, auth, 'Content-Type: application/fhir+json', `Content-Length: ${Buffer.byteLength(body)}`],
        body,
      ),
    );
    conn.socket.destroy();
  }
  // Each exchange gets its access line when it closes: then the gateway is done with all ten.
  await eventually(() => accessLines() - before >= 10, 'an access line for each of the ten exchanges');
  t.same(await settled(() => gw.spoolFiles(), []), [], 'no spool file left');
  t.same(await settled(() => deletedSpoolFds(gw.spoolDir), []), [], 'no fd held on a deleted spool file');
});

t.test('review #3: spool fds are released when the upstream is down', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: `http://127.0.0.1:${await closedPort()}/fhir`, jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });
  for (let i = 0; i < 5; i++) {
    const r = await fetch(gw.base, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
      body: batch(200),
    });
    t.equal(r.status, 502);
    t.equal(outcomeCode(await r.json()), 'UPSTREAM_UNAVAILABLE');
  }
  t.same(await settled(() => gw.spoolFiles(), []), [], 'spool files removed');
  const open = await settled(() => deletedSpoolFds(gw.spoolDir), []);
  t.same(
    open.filter((f) => !/\/fbg-body-[^/]*$/.test(f)),
    [],
    'and the fds of the scanned Bundles closed',
  );
  // Found by the test-habits work: send() left a failed request's spooled body open.
  t.same(open, [], 'and so are those of the rewritten bodies the upstream never took');
});

t.test("review #5: a parameter hidden behind ';' is seen by the scope checks too", async (t) => {
  const up = await startRecordingServer(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Observation.rs' } });
  for (const q of ['code=x&_include=Observation:subject', 'code=x;_include=Observation:subject']) {
    const r = await rawRequest(
      portOf(gw.url),
      httpMessage([`GET /fhir/Observation?${q} HTTP/1.1`, HOST, `Authorization: Bearer ${token}`]),
    );
    t.equal(r.statusCode, 403, q);
    t.equal(outcomeCode(r.body), 'INSUFFICIENT_SCOPE', q);
  }
  t.equal(up.requests.length, 0, 'nothing reached the upstream');
});

t.test('review #7: forwarding lookalikes are dropped and X-Forwarded-Host is the public host, not the client Host', async (t) => {
  const up = await startRecordingServer(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Patient.r' } });
  const r = await rawRequest(
    portOf(gw.url),
    httpMessage([
      'GET /fhir/Patient/p1 HTTP/1.1',
      'Host: evil.example',
      `Authorization: Bearer ${token}`,
      'X_Forwarded_For: 10.9.9.9',
      'x_forwarded_proto: https',
      'X-Original-URL: /admin',
      'X-Rewrite-URL: /admin',
      'X-Forwarded-Server: evil',
      'X-Custom: kept',
    ]),
  );
  t.equal(r.statusCode, 200);
  const h = up.requests[0].headers;
  t.equal(h['x-forwarded-host'], 'gateway.test', 'from publicBaseUrl');
  for (const name of ['x_forwarded_for', 'x_forwarded_proto', 'x-original-url', 'x-rewrite-url', 'x-forwarded-server'])
    t.equal(h[name], undefined, `${name} dropped`);
  t.equal(h['x-custom'], 'kept', 'ordinary headers still pass');
  t.equal(h['x-forwarded-proto'], 'http');
});

t.test('review #8: an exchange the upstream cuts short still gets an access line, marked aborted', async (t) => {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    // Large enough to be streamed on (a small answer is read whole first, and its loss becomes a clean 502).
    res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': 1_000_000 });
    res.write('{"resourceType":"Patient","id":"p1",');
    setTimeout(() => res.socket?.destroy(), 50);
  });
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Patient.r' } });
  const r = await rawRequest(portOf(gw.url), httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, `Authorization: Bearer ${token}`]), {
    timeoutMs: 2000,
  }).catch(() => undefined);
  t.notOk(r?.complete, 'the client does not get a complete answer');
  const id = up.requests[0].headers['x-request-id'];
  const lines = () => gw.logs.lines.filter((l) => l['reqId'] === id);
  // The access line is written when the exchange closes, which may be after the client saw the cut.
  const access = await eventually(() => lines().find((l) => l['msg'] === 'request'), 'the access line of the cut exchange');
  t.equal(access['aborted'], true, 'access line with aborted: true');
  t.same([access['status'], access['statusSent']], [499, 200], 'logged 499, never 200; the head that went out is kept');
  const warning = await eventually(() => lines().find((l) => l['msg'] === 'upstream response broke off'), 'a warning saying why');
  t.equal(warning['level'], 'warn', 'and a warning saying why');
});

t.test('review #9: credentials in upstream.url are a configuration error', async (t) => {
  try {
    buildConfig(
      { upstream: { url: 'https://user:secret@hapi.test/fhir' }, defaultRule: { require: { auth: false, smart: false } } },
      'test.yaml',
      '/',
    );
    t.fail('accepted');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    t.same((err as ConfigError).problems, ['test.yaml: /upstream/url: must not contain credentials (user:password@)']);
    t.notMatch((err as ConfigError).message, /secret/, 'the password is not echoed');
  }
});
