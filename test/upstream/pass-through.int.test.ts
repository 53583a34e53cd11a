/**
 * Pass-through: what the upstream receives, what the client receives back, and that bodies
 * stream both ways without being held. The upstreams here are plain node:http (or raw TCP)
 * servers the test controls, so every header on the wire can be checked.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import {
  httpMessage,
  outcomeCode as outcomeCodeOf,
  portOf,
  rawRequest,
  startRecordingServer,
  type RecordingServer,
} from '../helpers/raw-http.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds fhir.write files.write' } });
const AUTH = `Authorization: Bearer ${token}`;
const HOST = 'Host: gateway.test';
/** A generated request id: a random UUID (v4), which says nothing about how many requests came before. */
const GENERATED_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function setup(
  t: Test,
  handler?: Parameters<typeof startRecordingServer>[1],
  config?: Record<string, unknown>,
): Promise<{ up: RecordingServer; gw: TestGateway; port: number }> {
  const up = await startRecordingServer(t, handler);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, ...(config ? { config } : {}) });
  return { up, gw, port: portOf(gw.url) };
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);
}

t.test('hop-by-hop request headers are stripped before the upstream', async (t) => {
  const { up, port } = await setup(t);
  const res = await rawRequest(
    port,
    httpMessage([
      'GET /fhir/Patient/p1 HTTP/1.1',
      HOST,
      AUTH,
      'Connection: keep-alive, X-Custom',
      'Keep-Alive: timeout=99, max=1000',
      'TE: trailers, deflate',
      'Trailer: X-Checksum',
      'Upgrade: h2c',
      'Proxy-Authorization: Basic dXNlcjpwYXNz',
      'Proxy-Connection: keep-alive',
      'X-Custom: named-in-connection',
      'X-Kept: yes',
    ]),
  );
  t.equal(res.statusCode, 200);
  t.equal(up.requests.length, 1);
  const h = up.requests[0].headers;
  for (const name of ['keep-alive', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'x-custom']) {
    t.equal(h[name], undefined, `${name} not forwarded`);
  }
  // Node's client agent writes its own Connection header; the client's tokens must not survive.
  t.equal(h.connection, 'keep-alive', "only the gateway agent's own Connection header");
  t.equal(h['x-kept'], 'yes', 'end-to-end headers are forwarded');
});

t.test('an h2c upgrade request is served as a plain request, never tunnelled', async (t) => {
  const { up, port } = await setup(t);
  // With no 'upgrade' listener Node hands Upgrade requests to the request handler like any other.
  const res = await rawRequest(
    port,
    httpMessage([
      'GET /fhir/Patient/p1 HTTP/1.1',
      HOST,
      AUTH,
      'Connection: Upgrade, HTTP2-Settings',
      'Upgrade: h2c',
      'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    ]),
  );
  t.equal(res.statusCode, 200, 'never 101 Switching Protocols');
  t.equal(up.requests.length, 1);
  t.equal(up.requests[0].headers.upgrade, undefined, 'Upgrade not forwarded');
  t.equal(up.requests[0].headers['http2-settings'], undefined, 'HTTP2-Settings (named in Connection) not forwarded');
});

t.test('Connection cannot make the gateway drop its own X-Forwarded-For / X-Request-Id', async (t) => {
  const { up, port } = await setup(t);
  const res = await rawRequest(
    port,
    httpMessage([
      'GET /fhir/Patient/p1 HTTP/1.1',
      HOST,
      AUTH,
      'Connection: X-Forwarded-For, X-Request-Id, X-Custom',
      'X-Custom: drop me',
      'X-Request-Id: client-id-1',
    ]),
  );
  t.equal(res.statusCode, 200);
  const h = up.requests[0].headers;
  t.equal(h['x-custom'], undefined, 'X-Custom (named in Connection) dropped');
  t.equal(h['x-forwarded-for'], '127.0.0.1', "the gateway's X-Forwarded-For still arrives");
  t.type(h['x-request-id'], 'string', "the gateway's X-Request-Id still arrives");
  t.equal(h['x-request-id'], res.headers['x-request-id'], 'the same id the client got back');
});

t.test('Connection may not name a header the gateway checked (the upstream would act on a different request)', async (t) => {
  const { up, port } = await setup(t);
  for (const named of ['Content-Type', 'authorization', 'Host', 'Content-Length', 'Transfer-Encoding', 'X-Security-Context']) {
    const res = await rawRequest(
      port,
      httpMessage(
        [
          'POST /fhir/Patient/$validate HTTP/1.1',
          HOST,
          AUTH,
          `Connection: keep-alive, ${named}`,
          'Content-Type: application/fhir+json',
          'Content-Length: 2',
        ],
        '{}',
      ),
    );
    t.equal(res.statusCode, 400, `Connection: ${named}`);
    t.equal(outcomeCodeOf(res.body), 'BAD_REQUEST', `Connection: ${named}: code`);
  }
  t.equal(up.requests.length, 0, 'nothing reached the upstream');
});

t.test('upstream.aliases: Location under another name the upstream uses for itself is rewritten too', async (t) => {
  const { port } = await setup(
    t,
    (req, res) => {
      req.resume();
      res.writeHead(201, {
        location: 'https://hapi.internal:8443/fhir/Patient/p9/_history/1',
        'content-type': 'application/fhir+json',
        'content-length': 2,
      });
      res.end('{}');
    },
    { upstream: { aliases: ['https://hapi.internal:8443/fhir/'] } },
  );
  const res = await rawRequest(
    port,
    httpMessage(['POST /fhir/Patient/$validate HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', 'Content-Length: 2'], '{}'),
  );
  t.equal(res.statusCode, 201);
  t.equal(res.headers.location, 'http://gateway.test/fhir/Patient/p9/_history/1');
});

t.test('X-Forwarded-* are set by the gateway; what the client sent under those names is dropped', async (t) => {
  const { up, port } = await setup(t);
  const res = await rawRequest(
    port,
    httpMessage([
      'GET /fhir/Patient/p1 HTTP/1.1',
      HOST,
      AUTH,
      'Forwarded: for=10.9.9.9;host=evil.test;proto=https',
      'X-Real-IP: 10.9.9.9',
      'X-Forwarded-For: 10.9.9.9',
      'X-Forwarded-Host: evil.test',
      'X-Forwarded-Proto: https',
      'X-Forwarded-Port: 443',
      'X-Forwarded-Prefix: /admin',
    ]),
  );
  t.equal(res.statusCode, 200);
  const h = up.requests[0].headers;
  t.equal(h.forwarded, undefined, 'Forwarded dropped');
  t.equal(h['x-real-ip'], undefined, 'X-Real-IP dropped');
  t.equal(h['x-forwarded-port'], undefined, 'X-Forwarded-Port dropped');
  t.equal(h['x-forwarded-prefix'], undefined, 'X-Forwarded-Prefix dropped');
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the socket peer only (peer not a trusted proxy)');
  t.equal(h['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is what the gateway saw, not what the client claimed');
  t.equal(h['x-forwarded-host'], 'gateway.test', "X-Forwarded-Host is the client's Host");
  t.equal(h.host, `127.0.0.1:${up.port}`, 'Host is the upstream');
});

t.test('Authorization is not forwarded unless the rule says so', async (t) => {
  const { up, port } = await setup(t);
  t.equal((await rawRequest(port, httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]))).statusCode, 200);
  t.equal(up.requests[0].headers.authorization, undefined, 'dropped by default');

  const fwd = await setup(t, undefined, { rules: [{ name: 'fwd', match: { resourceTypes: ['Patient'] }, forwardAuthorization: true }] });
  t.equal((await rawRequest(fwd.port, httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]))).statusCode, 200);
  t.equal(fwd.up.requests[0].headers.authorization, `Bearer ${token}`, 'forwarded where a rule sets forwardAuthorization');
});

t.test('request ids: a sane one from a trusted proxy is kept, from anyone else or insane replaced', async (t) => {
  const direct = await setup(t);
  const fromClient = await fetch(`${direct.gw.base}/Patient/p1`, {
    headers: { authorization: `Bearer ${token}`, 'x-request-id': 'MRN-12345-SMITH' },
  });
  t.match(
    fromClient.headers.get('x-request-id'),
    GENERATED_ID,
    'a client that is not a trusted proxy does not choose the id logs and audit records carry',
  );
  t.equal(direct.up.requests.at(-1)!.headers['x-request-id'], fromClient.headers.get('x-request-id'));

  const { up, gw } = await setup(t, undefined, { server: { trustedProxies: ['127.0.0.1/32'] } });
  const send = (id: string | undefined) =>
    fetch(`${gw.base}/Patient/p1`, { headers: { authorization: `Bearer ${token}`, ...(id === undefined ? {} : { 'x-request-id': id }) } });

  const sane = await send('abc-123.DEF:456-x');
  t.equal(sane.headers.get('x-request-id'), 'abc-123.DEF:456-x', 'echoed to the client');
  t.equal(up.requests.at(-1)!.headers['x-request-id'], 'abc-123.DEF:456-x', 'forwarded to the upstream');

  for (const [note, id] of [
    ['too long', 'a'.repeat(129)],
    ['spaces', 'id with spaces'],
    ['other characters', 'id<script>'],
  ] as const) {
    const r = await send(id);
    const got = r.headers.get('x-request-id') ?? '';
    t.match(got, GENERATED_ID, `${note}: replaced by a generated id`);
    t.equal(up.requests.at(-1)!.headers['x-request-id'], got, `${note}: the upstream gets the generated id`);
  }
  const none = await send(undefined);
  t.match(none.headers.get('x-request-id'), GENERATED_ID, 'generated when absent');
  const again = await send(undefined);
  t.not(again.headers.get('x-request-id'), none.headers.get('x-request-id'), 'each request gets its own id');
  t.equal((await send('a'.repeat(128))).headers.get('x-request-id'), 'a'.repeat(128), '128 characters is still sane');
});

/** A raw TCP upstream answering every request with `response` exactly as given. */
async function rawUpstream(t: Test, response: (port: number) => string): Promise<{ url: string; port: number }> {
  const server = net.createServer((socket) => {
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        socket.write(response((server.address() as AddressInfo).port));
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/fhir`, port };
}

t.test('hop-by-hop, Connection-named and revealing response headers are stripped', async (t) => {
  const body = '{"resourceType":"Patient","id":"p1"}';
  const up = await rawUpstream(
    t,
    () =>
      'HTTP/1.1 200 OK\r\n' +
      'Content-Type: application/fhir+json\r\n' +
      `Content-Length: ${body.length}\r\n` +
      'Connection: keep-alive, X-Internal-Node\r\n' +
      'Keep-Alive: timeout=999, max=7\r\n' +
      'Proxy-Authenticate: Basic realm="upstream"\r\n' +
      'Proxy-Connection: keep-alive\r\n' +
      'Trailer: X-Checksum\r\n' +
      'Upgrade: h2c\r\n' +
      'X-Internal-Node: node-7.internal\r\n' +
      'Server: HAPI-FHIR/7.0 (Jetty 12)\r\n' +
      'X-Powered-By: HAPI FHIR 7.0 REST Server\r\n' +
      'ETag: W/"3"\r\n' +
      '\r\n' +
      body,
  );
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const res = await rawRequest(portOf(gw.url), httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]));
  t.equal(res.statusCode, 200);
  t.equal(res.body.toString(), body, 'body intact');
  t.equal(res.headers.etag, 'W/"3"', 'end-to-end headers kept');
  for (const name of ['proxy-authenticate', 'proxy-connection', 'trailer', 'upgrade', 'x-internal-node', 'server', 'x-powered-by']) {
    t.equal(res.headers[name], undefined, `${name} not passed to the client`);
  }
  t.not(res.headers['keep-alive'], 'timeout=999, max=7', "the upstream's Keep-Alive is not the client's");
  t.notMatch(res.headers.connection ?? '', /x-internal-node/i, "the upstream's Connection tokens are not passed on");
  t.match(res.headers['x-request-id'], GENERATED_ID, 'our request id is added');
});

t.test('Location and Content-Location under the upstream base are rewritten to the public base; others are not', async (t) => {
  const cases: [string, string | ((upBase: string) => string), string | ((upBase: string) => string)][] = [
    ['under the base', (b) => `${b}/Patient/p1/_history/1`, 'http://gateway.test/fhir/Patient/p1/_history/1'],
    ['the base itself', (b) => b, 'http://gateway.test/fhir'],
    ['with a query', (b) => `${b}?_id=p1`, 'http://gateway.test/fhir?_id=p1'],
    ['another origin', 'http://other.test/fhir/Patient/p1', 'http://other.test/fhir/Patient/p1'],
    ['same origin, outside the base', (b) => `${b.replace(/\/fhir$/, '')}/admin/x`, (b) => `${b.replace(/\/fhir$/, '')}/admin/x`],
    ['a base-path prefix that is not the base', (b) => `${b}x/Patient/p1`, (b) => `${b}x/Patient/p1`],
    ['relative', 'Patient/p1/_history/1', 'Patient/p1/_history/1'],
  ];
  let current = 0;
  const { up, port } = await setup(t, (req, res) => {
    req.resume();
    const c = cases[current];
    const v = typeof c[1] === 'function' ? c[1](`http://127.0.0.1:${(req.socket.localPort ?? 0).toString()}/fhir`) : c[1];
    res.writeHead(201, { location: v, 'content-location': v, 'content-type': 'application/fhir+json', 'content-length': 2 });
    res.end('{}');
  });
  const upBase = up.url;
  for (; current < cases.length; current++) {
    const [note, , want] = cases[current];
    const expected = typeof want === 'function' ? want(upBase) : want;
    const res = await rawRequest(
      port,
      httpMessage(['POST /fhir/Patient/$validate HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', 'Content-Length: 2'], '{}'),
    );
    t.equal(res.statusCode, 201, note);
    t.equal(res.headers.location, expected, `Location: ${note}`);
    t.equal(res.headers['content-location'], expected, `Content-Location: ${note}`);
  }
});

t.test('responses stream: the client gets the first chunk while the upstream is still writing', async (t) => {
  const release = deferred();
  const upstreamDone = deferred();
  const { gw } = await setup(t, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    res.write('{"resourceType":"Bundle",');
    void release.promise.then(() => {
      res.end('"type":"searchset"}');
      upstreamDone.resolve();
    });
  });
  let finished = false;
  void upstreamDone.promise.then(() => (finished = true));
  const res = await within(fetch(`${gw.base}/Patient?name=x`, { headers: { authorization: `Bearer ${token}` } }), 3000, 'response head');
  t.equal(res.status, 200);
  const reader = res.body!.getReader();
  const first = await within(reader.read(), 3000, 'first chunk');
  // The rewrite engine writes each member once it is complete: the comma waits for the next one.
  const head = Buffer.from(first.value ?? []).toString();
  t.equal(head, '{"resourceType":"Bundle"', 'first chunk arrived');
  t.equal(finished, false, 'before the upstream finished its response');
  release.resolve();
  let rest = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += Buffer.from(value).toString();
  }
  t.equal(rest, ',"type":"searchset"}', 'the rest follows');
  t.equal(head + rest, '{"resourceType":"Bundle","type":"searchset"}', 'unchanged as a whole');
});

/** Deterministic pseudo-random bytes, generated chunk by chunk (never 50 MB at once). */
function* pattern(total: number, size = 256 * 1024): Generator<Buffer> {
  let seed = 0x9e3779b9;
  for (let sent = 0; sent < total; sent += size) {
    const b = Buffer.allocUnsafe(Math.min(size, total - sent));
    for (let i = 0; i < b.length; i += 4) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      b.writeUInt32LE(seed, i);
    }
    yield b;
  }
}

/** An upstream that hashes the body it receives and answers 201 with the digest. */
function hashingUpstream(onFirstBytes?: () => void): Parameters<typeof startRecordingServer>[1] {
  return (req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      if (n === 0) onFirstBytes?.();
      n += d.length;
      h.update(d);
    });
    req.on('end', () => {
      const body = JSON.stringify({ sha256: h.digest('hex'), bytes: n });
      res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
}

function post(
  gwUrl: string,
  headers: http.OutgoingHttpHeaders,
): { req: http.ClientRequest; response: Promise<{ status: number; body: string }> } {
  const u = new URL(`${gwUrl}/fhir/Observation/$validate`);
  // Form-encoded: the one operation body format passed on without the JSON attachment guard, so the
  // bytes are this test's own (the guard is tested in operation-bodies.int.test.ts).
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
  const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  return { req, response };
}

t.test('request bodies stream: the upstream gets the first bytes before the client has sent the rest', async (t) => {
  const firstBytes = deferred();
  const { gw, up } = await setup(
    t,
    hashingUpstream(() => firstBytes.resolve()),
  );
  const { req, response } = post(gw.url, { 'transfer-encoding': 'chunked' });
  req.write(Buffer.alloc(64 * 1024, 1));
  await within(firstBytes.promise, 3000, 'first request bytes at the upstream');
  t.pass('the upstream is reading the body while the client is still sending');
  req.end(Buffer.alloc(64 * 1024, 2));
  const r = await response;
  t.equal(r.status, 201);
  const want = createHash('sha256')
    .update(Buffer.alloc(64 * 1024, 1))
    .update(Buffer.alloc(64 * 1024, 2))
    .digest('hex');
  t.same(JSON.parse(r.body), { sha256: want, bytes: 128 * 1024 });
  t.equal(up.requests[0].url, '/fhir/Observation/$validate');
});

t.test('a ~50 MB POST body arrives intact at the upstream', async (t) => {
  const size = 50 * 1024 * 1024 + 12344;
  const { gw } = await setup(t, hashingUpstream(), { defaultRule: { limits: { maxRequestBytes: 64 * 1024 * 1024 } } });
  for (const [note, headers] of [
    ['chunked', { 'transfer-encoding': 'chunked' }],
    ['with Content-Length', { 'content-length': size }],
  ] as const) {
    const { req, response } = post(gw.url, headers);
    const want = createHash('sha256');
    for (const b of pattern(size)) {
      want.update(b);
      if (!req.write(b)) await new Promise((r) => req.once('drain', r));
    }
    req.end();
    const r = await response;
    t.equal(r.status, 201, note);
    t.same(JSON.parse(r.body), { sha256: want.digest('hex'), bytes: size }, `${note}: sha256 and length equal`);
  }
});

t.test('upstream connections are kept alive and reused', async (t) => {
  const { up, gw } = await setup(t);
  for (let i = 0; i < 20; i++) {
    const r = await fetch(`${gw.base}/Patient/p${i}`, { headers: { authorization: `Bearer ${token}` } });
    t.equal(r.status, 200);
    await r.arrayBuffer();
  }
  t.equal(up.requests.length, 20);
  t.ok(up.connections <= 2, `20 sequential requests used ${up.connections} upstream connection(s)`);
  t.equal(new Set(up.requests.map((r) => r.connection)).size, up.connections);
});

t.test('a DELETE reaches the upstream saying it has no body (Content-Length: 0), as through http-proxy before', async (t) => {
  const { up, port } = await setup(t);
  const res = await rawRequest(port, httpMessage(['DELETE /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]));
  t.equal(res.statusCode, 200);
  t.equal(up.requests.length, 1);
  t.equal(up.requests[0].headers['content-length'], '0');
  t.equal(up.requests[0].headers['transfer-encoding'], undefined, 'not chunked');
});
