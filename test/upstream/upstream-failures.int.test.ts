/**
 * What the client sees when the upstream fails: before answering (502/504 as OperationOutcome),
 * in the middle of an answer (the client connection is cut, never a clean truncated 200), and
 * what the upstream sees when the client goes away mid-download (its response is destroyed).
 */
import type { ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/poll.js';
import { closedPort, httpMessage, outcomeCode, portOf, RawConnection, startRecordingServer } from '../helpers/raw-http.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds fhir.write files.write' } });
const AUTH = `Authorization: Bearer ${token}`;
const HOST = 'Host: gateway.test';

function read(base: string, path = '/Patient/p1', headers: Record<string, string> = {}) {
  return fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, ...headers } });
}

t.test('upstream port closed: 502 UPSTREAM_UNAVAILABLE as an OperationOutcome', async (t) => {
  const port = await closedPort();
  const gw = await startTestGateway(t, { upstream: `http://127.0.0.1:${port}/fhir`, jwksUri: jwks.url });
  const res = await read(gw.base);
  t.equal(res.status, 502);
  t.match(res.headers.get('content-type'), /^application\/fhir\+json/);
  const body = await res.json();
  t.equal(outcomeCode(body), 'UPSTREAM_UNAVAILABLE');
  t.match(body, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] });
  t.match(res.headers.get('x-request-id'), /^[0-9a-f-]{36}$/, 'the request id is on the error too');
  t.notMatch(JSON.stringify(body), /ECONNREFUSED|127\.0\.0\.1|stack/i, 'no internals leak to the client');
  t.ok(
    gw.logs.lines.some((l) => l.msg === 'upstream exchange failed' && l.code === 'UPSTREAM_UNAVAILABLE' && l.cause === 'ECONNREFUSED'),
    'the cause is logged',
  );

  // Reads are FHIR JSON only (the gateway rewrites them); the capability statement passes as asked.
  const xml = await read(gw.base, '/metadata', { accept: 'application/fhir+xml' });
  t.equal(xml.status, 502);
  t.match(await xml.text(), /<code value="UPSTREAM_UNAVAILABLE"\/>/, 'in XML when asked');
});

t.test('upstream accepts but never answers: 504 UPSTREAM_TIMEOUT', async (t) => {
  const up = await startRecordingServer(t, (req) => {
    req.resume(); // read the request, never answer
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { timeoutMs: 300 } } });
  const started = Date.now();
  const res = await read(gw.base);
  const ms = Date.now() - started;
  t.equal(res.status, 504);
  t.equal(outcomeCode(await res.json()), 'UPSTREAM_TIMEOUT');
  t.equal(up.requests.length, 1, 'the upstream did get the request');
  t.ok(ms >= 280 && ms < 3000, `timed out after ~300 ms (${ms} ms)`);

  // A TCP peer that never even reads is the same to the client.
  const silent = net.createServer(() => undefined);
  const sockets: net.Socket[] = [];
  silent.on('connection', (s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => silent.close(() => r()));
  });
  const gw2 = await startTestGateway(t, {
    upstream: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/fhir`,
    jwksUri: jwks.url,
    config: { upstream: { timeoutMs: 300 } },
  });
  const res2 = await read(gw2.base);
  t.equal(res2.status, 504);
  t.equal(outcomeCode(await res2.json()), 'UPSTREAM_TIMEOUT');
});

t.test('the upstream timeout is an idle timeout: a slow but steady answer is not cut', async (t) => {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    let i = 0;
    const timer = setInterval(() => {
      if (i++ < 5) {
        res.write(' ');
        return;
      }
      clearInterval(timer);
      res.end('{"resourceType":"Patient"}');
    }, 150);
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { timeoutMs: 300 } } });
  const res = await read(gw.base);
  t.equal(res.status, 200);
  t.equal((await res.text()).trim(), '{"resourceType":"Patient"}', 'the whole answer, ~900 ms with a 300 ms timeout');
});

async function gatewayDyingMidResponse(t: Test, respond: (res: ServerResponse) => void) {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    respond(res);
    // Die after the first part is on the wire: cut the TCP connection.
    setTimeout(() => res.socket?.destroy(), 100);
  });
  return startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
}

t.test(
  'upstream dies mid-response (Content-Length): a small answer is read before anything is sent, so the client gets a clean 502',
  async (t) => {
    const gw = await gatewayDyingMidResponse(t, (res) => {
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': 1000 });
      res.write('{"resourceType":"Patient",');
    });
    const conn = await RawConnection.connect(portOf(gw.url));
    t.teardown(() => conn.close());
    await conn.write(httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]));
    const res = await conn.readResponse({ timeoutMs: 3000 });
    t.equal(res.statusCode, 502, 'no head had been sent: the failure can still be said');
    t.match(res.body.toString(), /UPSTREAM_UNAVAILABLE/);
    t.notMatch(res.body.toString(), /Patient/, 'nothing of the broken answer');
  },
);

t.test('upstream dies mid-response (Content-Length, large): the client connection is cut', async (t) => {
  const gw = await gatewayDyingMidResponse(t, (res) => {
    res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': 1_000_000 });
    res.write('{"resourceType":"Patient",');
  });
  const conn = await RawConnection.connect(portOf(gw.url));
  t.teardown(() => conn.close());
  await conn.write(httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]));
  const res = await conn.readResponse({ timeoutMs: 3000 });
  t.equal(res.statusCode, 200, 'the head had already been sent');
  t.equal(res.complete, false, 'the body is incomplete by its own framing');
  t.equal(res.body.toString(), '{"resourceType":"Patient"', 'what had been rewritten so far (a member is written once complete)');
  t.ok(conn.closed, 'the gateway closed the connection (the client is not left waiting)');
});

t.test('upstream dies mid-response (chunked): no clean end is forged', async (t) => {
  const gw = await gatewayDyingMidResponse(t, (res) => {
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    res.write('{"resourceType":"Bundle",');
  });
  const conn = await RawConnection.connect(portOf(gw.url));
  t.teardown(() => conn.close());
  await conn.write(httpMessage(['GET /fhir/Patient?name=x HTTP/1.1', HOST, AUTH]));
  const res = await conn.readResponse({ timeoutMs: 3000 });
  t.equal(res.statusCode, 200);
  t.equal(res.chunked, true);
  t.equal(res.complete, false, 'no terminating zero-length chunk: the client can tell the answer is broken');
  t.equal(res.body.toString(), '{"resourceType":"Bundle"', 'what had been rewritten so far');
  t.ok(conn.closed, 'the connection is closed');

  // The same through fetch: the body read fails rather than ending quietly.
  const f = await read(gw.base, '/Patient?name=y');
  await t.rejects(f.text(), 'fetch sees a network error, not a short body');
});

t.test('client disconnects mid-download: the upstream response stream is destroyed', async (t) => {
  let upstreamClosed!: (v: { finished: boolean; written: number }) => void;
  const closed = new Promise<{ finished: boolean; written: number }>((r) => (upstreamClosed = r));
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    // An endless search answer: it streams through the response rewrite like any Bundle.
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    res.write('{"resourceType":"Bundle","type":"searchset","entry":[{}');
    let written = 0;
    // Of the type searched: the answer guard would drop anything else (and send nothing).
    const block = Buffer.from(',{"resource":{"resourceType":"DocumentReference","id":"b"}}'.repeat(400));
    // An endless download, written only as fast as it drains.
    const pump = () => {
      while (!res.destroyed && res.write(block)) written += block.length;
    };
    res.on('drain', pump);
    res.on('close', () => upstreamClosed({ finished: res.writableFinished, written }));
    pump();
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const conn = await RawConnection.connect(portOf(gw.url));
  await conn.write(httpMessage(['GET /fhir/DocumentReference?status=current HTTP/1.1', HOST, AUTH]));
  t.ok(await conn.waitForBytes(64 * 1024), 'the download is flowing');
  conn.close();
  const result = await Promise.race([closed, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3000))]);
  t.not(result, 'timeout', "the upstream's response was closed after the client left");
  if (result !== 'timeout') t.equal(result.finished, false, 'closed before it finished: destroyed, not completed');
  // The exchange's access line is its last word: once it is there, an error line would be too.
  const access = await eventually(() => gw.logs.lines.find((l) => l['msg'] === 'request'), 'the access line of the download');
  t.equal(access['aborted'], true, 'logged as cut short');
  t.same(
    gw.logs.lines.filter((l) => l['level'] === 'error'),
    [],
    'a client going away is not logged as an error',
  );
});

t.test('a client that uploads slowly is not blamed on the upstream: the idle timer starts once the request is sent', async (t) => {
  const up = await startRecordingServer(t, (req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'Basic', received: n }));
    });
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { timeoutMs: 300 } } });
  const conn = await RawConnection.connect(portOf(gw.url));
  t.teardown(() => conn.socket.destroy());
  await conn.write(
    httpMessage(['POST /fhir/Basic/$validate HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', 'Transfer-Encoding: chunked']),
  );
  await conn.write('5\r\n{"a":\r\n');
  // The scenario itself: the client pauses for three times the upstream timeout (nothing to poll for,
  // the pause must simply be longer than the timeout that must not fire).
  await new Promise((r) => setTimeout(r, 900));
  await conn.write('2\r\n1}\r\n0\r\n\r\n');
  const res = await conn.readResponse({ timeoutMs: 3000 });
  t.equal(res.statusCode, 201, 'answered normally, not 504');
  t.match(JSON.parse(res.body.toString('utf8')), { received: 7 });
});

t.test(
  'an upstream that stalls mid-answer is cut after the idle timeout: the client is not left hanging, the upstream connection is closed',
  async (t) => {
    for (const [label, length] of [
      ['small answer (read whole first)', 4_000],
      ['large answer (streamed)', 200_000],
    ] as const) {
      let upstreamSocketClosed = false;
      const up = await startRecordingServer(t, (req, res) => {
        req.resume();
        res.socket?.once('close', () => (upstreamSocketClosed = true));
        res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': String(length) });
        res.write(`{"resourceType":"Patient","text":"${'x'.repeat(1_000)}`);
        // …and nothing more.
      });
      const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { timeoutMs: 300 } } });
      const conn = await RawConnection.connect(portOf(gw.url));
      t.teardown(() => conn.socket.destroy());
      const started = Date.now();
      await conn.write(httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH]));
      const res = await conn.readResponse({ timeoutMs: 5_000 }).catch((err: unknown) => err as Error);
      const ms = Date.now() - started;
      if (res instanceof Error) t.fail(`${label}: ${res.message}`);
      else if (res.statusCode === 200) t.notOk(res.complete, `${label}: the 200 already under way is cut, never passed off as whole`);
      else t.same([res.statusCode, outcomeCode(res.body)], [504, 'UPSTREAM_TIMEOUT'], `${label}: nothing sent yet, so a clean 504 instead`);
      t.ok(ms >= 280 && ms < 3_000, `${label}: after the 300 ms idle timeout (${ms} ms)`);
      t.ok(
        await eventually(() => upstreamSocketClosed, 'the stalled upstream connection closing').catch(() => false),
        `${label}: the stalled upstream connection was closed`,
      );
    }
  },
);

t.test('the upstream breaking off a Binary with inline data midway: 502 UPSTREAM_UNAVAILABLE, not 500', async (t) => {
  // Chunked, no length: the gateway streams it for the one attachment it serves (inline data spooled).
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/fhir+json' });
    const data = Buffer.alloc(300_000, 7).toString('base64');
    res.write(
      req.url?.includes('DocumentReference')
        ? `{"resourceType":"DocumentReference","id":"d1","status":"current","content":[{"attachment":{"contentType":"application/pdf","data":"${data}`
        : `{"resourceType":"Binary","id":"b1","contentType":"application/pdf","data":"${data}`,
    );
    setTimeout(() => res.socket?.destroy(), 30);
  });
  const gw = await startTestGateway(t, { upstream: `${up.url}/fhir`, jwksUri: jwks.url });
  for (const path of ['/Binary/b1', '/DocumentReference/d1/$binary-access-read?path=DocumentReference.content[0].attachment']) {
    const res = await read(gw.base, path);
    t.equal(res.status, 502, path);
    t.equal(outcomeCode(await res.json()), 'UPSTREAM_UNAVAILABLE');
  }
  t.notOk(
    gw.logs.lines.some((l) => l.level === 'error' && l.msg === 'internal error'),
    'no internal error',
  );
});
