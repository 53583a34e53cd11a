/**
 * Request size limits and Expect handling, against a plain upstream that records each request
 * the moment its head arrives and whether its body ever completed.
 */
import type { IncomingMessage } from 'node:http';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { settled } from '../helpers/poll.js';
import { chunk, httpMessage, outcomeCode, portOf, RawConnection, rawRequest, sleep, startRecordingServer } from '../helpers/raw-http.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds fhir.write files.write' } });
const AUTH = `Authorization: Bearer ${token}`;
const HOST = 'Host: gateway.test';
const LIMIT = 1024;
/**
 * A bounded wait before checking that something did NOT reach the upstream, taken only after the
 * gateway is done with the exchange (its access line is written, or it closed the connection):
 * long enough for a request it had forwarded to land.
 */
const QUIET_MS = 100;

interface BodyOutcome {
  bytes: number;
  /** 'end': the whole body arrived; 'aborted': the connection went away first. */
  result: 'end' | 'aborted';
}

/**
 * An upstream that reads each body to its end (answering 201) or notices it was cut off, and a
 * gateway whose Observation rule allows LIMIT bytes (everything else: the 10 MB default).
 */
async function setup(t: Test) {
  const bodies: BodyOutcome[] = [];
  const firstBytes: (() => void)[] = [];
  const onSettle: ((o: BodyOutcome) => void)[] = [];
  const up = await startRecordingServer(t, (req: IncomingMessage, res) => {
    let bytes = 0;
    let done = false;
    const finish = (result: BodyOutcome['result']) => {
      if (done) return;
      done = true;
      const o = { bytes, result };
      bodies.push(o);
      for (const f of onSettle.splice(0)) f(o);
    };
    req.on('data', (d: Buffer) => {
      if (bytes === 0) for (const f of firstBytes.splice(0)) f();
      bytes += d.length;
    });
    req.on('end', () => {
      finish('end');
      const body = JSON.stringify({ resourceType: 'Binary', id: 'b1' });
      res.writeHead(201, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => undefined);
    req.on('close', () => finish(req.complete ? 'end' : 'aborted'));
  });
  const gw = await startTestGateway(t, {
    upstream: up.url,
    jwksUri: jwks.url,
    config: { rules: [{ name: 'small-binaries', match: { resourceTypes: ['Observation'] }, limits: { maxRequestBytes: LIMIT } }] },
  });
  return {
    up,
    gw,
    port: portOf(gw.url),
    bodies,
    nextFirstBytes: () => new Promise<void>((r) => firstBytes.push(r)),
    nextSettled: () => new Promise<BodyOutcome>((r) => onSettle.push(r)),
  };
}

function postHead(path: string, ...extra: string[]): string[] {
  // Form-encoded: operation bodies in other formats are checked (JSON) or refused; these tests are about size.
  return [`POST ${path} HTTP/1.1`, HOST, AUTH, 'Content-Type: application/x-www-form-urlencoded', ...extra];
}

t.test('a declared Content-Length over the rule limit is refused with 413 before the upstream', async (t) => {
  const { up, gw, port } = await setup(t);
  // Only the head is sent: the refusal must not wait for (or read) the body.
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(httpMessage(postHead('/fhir/Observation/$validate', `Content-Length: ${LIMIT + 1}`)));
  const res = await conn.readResponse();
  t.equal(res.statusCode, 413);
  t.equal(outcomeCode(res.body), 'PAYLOAD_TOO_LARGE');
  t.equal(res.headers.connection, 'close', 'the unread body is not taken as the next request');
  t.ok(await conn.waitClosed(), 'the connection is closed');
  await gw.accessLine(res.headers['x-request-id']);
  await sleep(QUIET_MS);
  t.same(up.requests, [], 'the upstream received nothing');

  // The same size is fine where no rule narrows the default limit, and exactly LIMIT is fine here.
  const ok = await rawRequest(
    port,
    httpMessage([...postHead('/fhir/Observation/$validate'), `Content-Length: ${LIMIT}`], Buffer.alloc(LIMIT, 7)),
  );
  t.equal(ok.statusCode, 201, 'exactly at the limit is accepted');
  const other = await rawRequest(
    port,
    httpMessage(
      ['POST /fhir/Patient HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', `Content-Length: ${LIMIT + 1}`],
      `{"resourceType":"Patient"}`.padEnd(LIMIT + 1, ' '),
    ),
  );
  t.equal(other.statusCode, 201, 'the limit is the rule’s, not global');
  t.equal(up.requests.length, 2);
});

t.test('a chunked body that grows past the limit gets 413 and the upstream request is aborted', async (t) => {
  const { up, port, nextFirstBytes, nextSettled } = await setup(t);
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  const first = nextFirstBytes();
  const outcome = nextSettled();
  await conn.write(
    Buffer.concat([httpMessage(postHead('/fhir/Observation/$validate', 'Transfer-Encoding: chunked')), chunk(Buffer.alloc(600, 1))]),
  );
  // Streaming: the upstream already has the request and its first bytes.
  await first;
  t.equal(up.requests.length, 1, 'the request was being streamed to the upstream');
  await conn.write(Buffer.concat([chunk(Buffer.alloc(600, 2)), chunk(Buffer.alloc(600, 3)), chunk('')]));
  const res = await conn.readResponse();
  t.equal(res.statusCode, 413);
  t.equal(outcomeCode(res.body), 'PAYLOAD_TOO_LARGE');
  const body = await outcome;
  t.equal(body.result, 'aborted', 'the upstream saw its request cut off, never a complete body');
  t.ok(body.bytes <= LIMIT, `the upstream got at most the limit (${body.bytes} bytes)`);
});

t.test('a chunked body over the limit sent at once never completes upstream either', async (t) => {
  const { up, gw, port, bodies } = await setup(t);
  const res = await rawRequest(
    port,
    Buffer.concat([
      httpMessage(postHead('/fhir/Observation/$validate', 'Transfer-Encoding: chunked')),
      chunk(Buffer.alloc(4 * LIMIT, 1)),
      chunk(''),
    ]),
  );
  t.equal(res.statusCode, 413);
  t.equal(outcomeCode(res.body), 'PAYLOAD_TOO_LARGE');
  // The upstream request (if one was begun) settles as cut off or complete; wait for the gateway
  // to be done with the exchange, then for any upstream body to settle.
  await gw.accessLine(res.headers['x-request-id']);
  await sleep(QUIET_MS);
  t.equal(await settled(() => bodies.length, up.requests.length), up.requests.length, 'every upstream request begun has settled');
  t.notOk(
    bodies.some((b) => b.result === 'end'),
    'no complete body reached the upstream',
  );
});

t.test('a chunked body within the limit goes through', async (t) => {
  const { port, bodies } = await setup(t);
  const res = await rawRequest(
    port,
    Buffer.concat([
      httpMessage(postHead('/fhir/Observation/$validate', 'Transfer-Encoding: chunked')),
      chunk(Buffer.alloc(LIMIT / 2, 1)),
      chunk(Buffer.alloc(LIMIT / 2, 2)),
      chunk(''),
    ]),
  );
  t.equal(res.statusCode, 201);
  t.same(bodies, [{ bytes: LIMIT, result: 'end' }]);
});

t.test('Expect: 100-continue with a too-large Content-Length gets 413 and never 100 Continue', async (t) => {
  const { up, port } = await setup(t);
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(httpMessage(postHead('/fhir/Observation/$validate', `Content-Length: ${10 * LIMIT}`, 'Expect: 100-continue')));
  const res = await conn.readResponse();
  t.equal(res.statusCode, 413, 'the first thing the client hears is the refusal');
  t.equal(outcomeCode(res.body), 'PAYLOAD_TOO_LARGE');
  t.ok(await conn.waitClosed(), 'the connection is closed');
  t.notMatch(conn.received.toString('latin1'), /HTTP\/1\.1 100/, 'no 100 Continue anywhere on the connection');
  t.same(up.requests, [], 'the upstream received nothing');
});

t.test('Expect: 100-continue on an unauthenticated upload gets 401 and never 100 Continue', async (t) => {
  const { up, port } = await setup(t);
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(
    httpMessage([
      'POST /fhir/Observation HTTP/1.1',
      HOST,
      'Content-Type: application/octet-stream',
      'Content-Length: 10',
      'Expect: 100-continue',
    ]),
  );
  const res = await conn.readResponse();
  t.equal(res.statusCode, 401);
  t.equal(outcomeCode(res.body), 'TOKEN_MISSING');
  t.notMatch(conn.received.toString('latin1'), /HTTP\/1\.1 100/, 'no 100 Continue');
  t.same(up.requests, [], 'the upstream received nothing');
});

t.test('Expect: 100-continue within the limit gets 100 Continue, then the request succeeds', async (t) => {
  const { up, port, bodies } = await setup(t);
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(httpMessage(postHead('/fhir/Observation/$validate', `Content-Length: ${LIMIT}`, 'Expect: 100-continue')));
  const interim = await conn.readResponse();
  t.equal(interim.statusCode, 100, '100 Continue before the body is sent');
  t.same(up.requests, [], 'nothing forwarded before the body comes');
  await conn.write(Buffer.alloc(LIMIT, 9));
  const res = await conn.readResponse();
  t.equal(res.statusCode, 201);
  t.same(bodies, [{ bytes: LIMIT, result: 'end' }], 'the whole body reached the upstream');
  t.equal(up.requests[0].headers.expect, undefined, 'Expect itself is not forwarded (hop-by-hop in practice)');
});

t.test('an Expect other than 100-continue gets 417', async (t) => {
  const { up, port } = await setup(t);
  const res = await rawRequest(
    port,
    httpMessage([...postHead('/fhir/Observation/$validate'), 'Content-Length: 4', 'Expect: something-else'], 'abcd'),
  );
  t.equal(res.statusCode, 417);
  t.equal(outcomeCode(res.body), 'EXPECTATION_FAILED');
  t.match(res.headers['content-type'], /^application\/fhir\+json/);
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a refusal before the flow still has a request id');
  // Answered by Node's checkExpectation before any exchange exists (no access line): the answer
  // itself is the gateway's last word on this request.
  await sleep(QUIET_MS);
  t.same(up.requests, [], 'the upstream received nothing');
});

t.test('a request head over Node’s header limit gets 431 as an OperationOutcome, nothing upstream', async (t) => {
  const { up, port } = await setup(t);
  // Refused by Node's parser (maxHeaderSize, 16 KiB by default) before any handler runs: no
  // exchange, no access line. What precedes "nothing upstream" is the gateway closing the connection.
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(httpMessage(['GET /fhir/Patient/p1 HTTP/1.1', HOST, AUTH, `X-Big: ${'a'.repeat(20 * 1024)}`])).catch(() => undefined);
  const res = await conn.readResponse();
  t.equal(res.statusCode, 431);
  t.match(res.headers['content-type'], /^application\/fhir\+json/);
  t.equal(outcomeCode(res.body), 'HEADERS_TOO_LARGE');
  t.equal(res.headers.connection, 'close');
  t.ok(await conn.waitClosed(), 'the connection is closed');
  await sleep(QUIET_MS);
  t.same(up.requests, [], 'the upstream received nothing');
});
