/**
 * Request targets and headers an upstream could read differently from the gateway. Every one is
 * sent as exact bytes over a raw socket (fetch would normalise most of them away) against the
 * real gateway in front of a real FHIR server, and every refusal is checked three ways: the
 * status, the OperationOutcome code, and that the upstream received nothing at all.
 *
 * Each request carries a valid token with wide scopes, so a refusal can only come from the
 * request-target / header checks, never from authorization.
 */
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { chunk, httpMessage, outcomeCode, portOf, RawConnection, rawRequest, sleep, type RawResponse } from '../helpers/raw-http.js';
import { startUpstream } from '../helpers/upstream.js';

const up = await startUpstream(t);
const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
const port = portOf(gw.url);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds fhir.write files.write' } });
const AUTH = `Authorization: Bearer ${token}`;
const HOST = 'Host: gateway.test';

// A real resource, so that a request that slipped through would find something to read.
const created = await fetch(`${gw.base}/Patient`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
  body: JSON.stringify({ resourceType: 'Patient', id: 'ignored', name: [{ family: 'Target' }] }),
});
const PID = (created.headers.get('location') ?? '').split('/')[5] ?? '';
const BIN = await fetch(`${gw.base}/Binary`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
  body: JSON.stringify({ resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('secret').toString('base64') }),
}).then((r) => (r.headers.get('location') ?? '').split('/')[5] ?? '');

function get(target: string, ...extra: string[]): Buffer {
  return httpMessage([`GET ${target} HTTP/1.1`, HOST, AUTH, ...extra]);
}

/**
 * A bounded wait before "the upstream received nothing", taken once the gateway is done with the
 * request: long enough for a request it had forwarded to land.
 */
const QUIET_MS = 100;

/**
 * Sends `bytes`, expects a refusal with `status` and `code` (null: the caller checks the body), and proves the upstream saw nothing:
 * once the gateway is done with the request (its access line is written; a request Node's parser
 * refused has none, and then the gateway closing the connection is its last word), the
 * upstream's request log is still unchanged after a bounded wait.
 */
async function refused(t: Test, bytes: Buffer, status: number, code: string | null, note?: string, head = false): Promise<RawResponse> {
  const before = up.requests.length;
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(bytes).catch(() => undefined); // the gateway may cut us off mid-write: read what it said
  let res = await conn.readResponse({ head });
  while (res.statusCode < 200) res = await conn.readResponse({ head });
  t.equal(res.statusCode, status, `status ${status}${note ? ` (${note})` : ''}`);
  if (code !== null) {
    t.match(res.headers['content-type'], /^application\/fhir\+json/, 'an OperationOutcome in FHIR JSON');
    t.equal(outcomeCode(res.body), code, `code ${code}`);
  }
  const reqId = res.headers['x-request-id'];
  if (reqId) await gw.accessLine(reqId);
  else t.ok(await conn.waitClosed(), 'refused by the HTTP parser: the connection is closed');
  conn.close();
  await sleep(QUIET_MS);
  t.same(up.requests.slice(before), [], 'the upstream received nothing');
  return res;
}

t.test('control: well-formed raw requests do reach the upstream', async (t) => {
  t.ok(PID, 'a patient exists');
  const before = up.requests.length;
  const res = await rawRequest(port, get(`/fhir/Patient/${PID}`));
  t.equal(res.statusCode, 200);
  t.equal(JSON.parse(res.body.toString()).id, PID);
  t.equal(up.requests.length, before + 1, 'exactly one request forwarded');
  t.equal(up.requests.at(-1)?.url, `/fhir/Patient/${PID}`);
  const bin = await rawRequest(port, get(`/fhir/Binary/${BIN}`));
  t.equal(bin.statusCode, 200, 'the Binary the bypasses aim at is readable with these scopes');
});

t.test('dot segments are refused, not resolved', async (t) => {
  await refused(t, get(`/fhir/Patient/../Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', '..');
  await refused(t, get('/fhir/./Patient'), 400, 'AMBIGUOUS_PATH', '.');
  await refused(t, get(`/fhir/Patient/${PID}/..`), 400, 'AMBIGUOUS_PATH', 'trailing ..');
  await refused(t, get('/fhir/Patient/..'), 400, 'AMBIGUOUS_PATH', 'id ..');
  await refused(t, get(`/fhir/../fhir/Patient/${PID}`), 400, 'AMBIGUOUS_PATH', 'above the base');
});

t.test('encoded slash (%2F) is refused', async (t) => {
  await refused(t, get(`/fhir/Patient%2F${PID}`), 400, 'AMBIGUOUS_PATH', '%2F');
  await refused(t, get(`/fhir/Patient%2f${PID}`), 400, 'AMBIGUOUS_PATH', '%2f');
  await refused(t, get(`/fhir/Patient/x%2F..%2F..%2FBinary%2F${BIN}`), 400, 'AMBIGUOUS_PATH', 'traversal in one segment');
});

t.test('encoded backslash (%5C) is refused', async (t) => {
  await refused(t, get(`/fhir/Patient%5C${PID}`), 400, 'AMBIGUOUS_PATH', '%5C');
  await refused(t, get(`/fhir/Patient/x%5c..%5cBinary%5c${BIN}`), 400, 'AMBIGUOUS_PATH', '%5c');
});

t.test('encoded dots are refused', async (t) => {
  await refused(t, get(`/fhir/Patient/%2e%2e/Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', '%2e%2e');
  await refused(t, get(`/fhir/Patient/.%2E/Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', '.%2E');
  await refused(t, get('/fhir/%2e/Patient'), 400, 'AMBIGUOUS_PATH', '%2e');
  await refused(t, get(`/fhir/Patient/%252e%252e/Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', 'double-encoded');
  await refused(t, get(`/fhir/Pati%65nt/${PID}`), 400, 'AMBIGUOUS_PATH', 'encoded letter');
});

t.test('raw backslash is refused (Node passes it through; the gateway refuses it)', async (t) => {
  await refused(t, get(`/fhir/Patient\\..\\Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', 'backslash traversal');
  await refused(t, get(`/fhir/Patient\\${PID}`), 400, 'AMBIGUOUS_PATH', 'backslash separator');
});

t.test('double slashes are refused', async (t) => {
  await refused(t, get(`/fhir//Patient/${PID}`), 400, 'AMBIGUOUS_PATH', 'inside');
  await refused(t, get(`/fhir/Patient//${PID}`), 400, 'AMBIGUOUS_PATH', 'before the id');
  await refused(t, get(`//fhir/Patient/${PID}`), 400, 'AMBIGUOUS_PATH', 'leading');
  await refused(t, get(`/fhir/Patient/${PID}/`), 400, 'AMBIGUOUS_PATH', 'trailing slash');
});

t.test('wrong-case resource types are refused', async (t) => {
  await refused(t, get(`/fhir/patient/${PID}`), 400, 'AMBIGUOUS_PATH', 'patient');
  await refused(t, get(`/fhir/BINARY/${BIN}`), 400, 'AMBIGUOUS_PATH', 'BINARY');
  await refused(t, get('/fhir/METADATA'), 400, 'AMBIGUOUS_PATH', 'METADATA');
  // The base path is case-sensitive too: /FHIR is simply not ours.
  await refused(t, get(`/FHIR/Patient/${PID}`), 404, 'NOT_FOUND', 'base path case');
});

t.test('matrix parameters (;) are refused', async (t) => {
  await refused(t, get(`/fhir/Patient;jsessionid=x/${PID}`), 400, 'AMBIGUOUS_PATH', 'on the type');
  await refused(t, get(`/fhir/Patient/${PID};v=1`), 400, 'AMBIGUOUS_PATH', 'on the id');
  await refused(t, get(`/fhir/Patient/..;/Binary/${BIN}`), 400, 'AMBIGUOUS_PATH', 'Tomcat-style ..;');
});

t.test('fragments in the request target are refused', async (t) => {
  await refused(t, get(`/fhir/Patient/${PID}#x`), 400, 'AMBIGUOUS_PATH', 'in the path');
  await refused(t, get(`/fhir/Patient?name=x#y`), 400, 'AMBIGUOUS_PATH', 'in the query');
});

t.test('absolute-form request targets are refused', async (t) => {
  await refused(t, get('http://evil.test/fhir/Patient'), 400, 'ABSOLUTE_FORM_TARGET', 'foreign host');
  await refused(t, get(`http://gateway.test/fhir/Patient/${PID}`), 400, 'ABSOLUTE_FORM_TARGET', 'our own host');
  await refused(t, httpMessage(['OPTIONS * HTTP/1.1', HOST, AUTH]), 400, 'ABSOLUTE_FORM_TARGET', 'asterisk-form');
});

t.test('X-HTTP-Method-Override and friends are refused', async (t) => {
  await refused(t, get(`/fhir/Patient/${PID}`, 'X-HTTP-Method-Override: DELETE'), 400, 'METHOD_OVERRIDE', 'X-HTTP-Method-Override');
  await refused(t, get(`/fhir/Patient/${PID}`, 'x-http-method: DELETE'), 400, 'METHOD_OVERRIDE', 'X-HTTP-Method');
  await refused(t, get(`/fhir/Patient/${PID}`, 'X-Method-Override: PUT'), 400, 'METHOD_OVERRIDE', 'X-Method-Override');
  // Refused whatever the value: even naming the same method.
  await refused(t, get(`/fhir/Patient/${PID}`, 'X-HTTP-Method-Override: GET'), 400, 'METHOD_OVERRIDE', 'same method');
});

t.test('the _method query parameter is refused', async (t) => {
  await refused(t, get(`/fhir/Patient/${PID}?_method=DELETE`), 400, 'METHOD_OVERRIDE', '_method');
  await refused(t, get(`/fhir/Patient?name=x&_METHOD=DELETE`), 400, 'METHOD_OVERRIDE', 'upper case');
  await refused(t, get(`/fhir/Patient?%5Fmethod=DELETE`), 400, 'METHOD_OVERRIDE', 'percent-encoded name');
  await refused(t, get(`/fhir/Patient?name=x;_method=DELETE`), 400, 'METHOD_OVERRIDE', 'after ;');
});

t.test('duplicate Authorization headers are refused', async (t) => {
  await refused(t, get(`/fhir/Patient/${PID}`, AUTH), 400, 'DUPLICATE_HEADER', 'identical');
  await refused(t, get(`/fhir/Patient/${PID}`, 'authorization: Bearer other'), 400, 'DUPLICATE_HEADER', 'different, other case');
});

t.test('duplicate Host headers are refused', async (t) => {
  await refused(t, get(`/fhir/Patient/${PID}`, 'Host: evil.test'), 400, 'DUPLICATE_HEADER', 'different');
  await refused(t, get(`/fhir/Patient/${PID}`, 'HOST: gateway.test'), 400, 'DUPLICATE_HEADER', 'identical');
});

t.test('duplicate Content-Type headers are refused', async (t) => {
  const body = JSON.stringify({ resourceType: 'Patient' });
  await refused(
    t,
    httpMessage(
      [
        'POST /fhir/Patient HTTP/1.1',
        HOST,
        AUTH,
        'Content-Type: application/fhir+json',
        'Content-Type: text/plain',
        `Content-Length: ${body.length}`,
      ],
      body,
    ),
    400,
    'DUPLICATE_HEADER',
  );
});

t.test('duplicate Content-Length headers are refused by Node before the gateway sees them', async (t) => {
  // llhttp refuses a repeated Content-Length (equal or not) and Content-Length with
  // Transfer-Encoding while parsing; the request never reaches the gateway's handler. The answer
  // still is an OperationOutcome (BAD_REQUEST), written by the server's clientError handler.
  const body = JSON.stringify({ resourceType: 'Patient' });
  const n = body.length;
  const logsBefore = gw.logs.lines.length;
  for (const [note, cl] of [
    ['equal values', [`Content-Length: ${n}`, `Content-Length: ${n}`]],
    ['different values', [`Content-Length: ${n}`, `Content-Length: ${n + 5}`]],
    ['with Transfer-Encoding', [`Content-Length: ${n}`, 'Transfer-Encoding: chunked']],
  ] as const) {
    const res = await refused(
      t,
      httpMessage(['POST /fhir/Patient HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', ...cl], body),
      400,
      'BAD_REQUEST',
      note,
    );
    t.equal(res.headers['connection'], 'close', 'the connection is closed: nothing after it is read as a request');
  }
  t.notOk(
    gw.logs.lines.slice(logsBefore).some((l) => l.msg === 'request' && l.method === 'POST'),
    'the gateway handler never saw these requests',
  );
});

t.test('obfuscated Transfer-Encoding is refused by Node or re-framed, never passed on ambiguously', async (t) => {
  const body = Buffer.concat([chunk(JSON.stringify({ resourceType: 'Patient' })), chunk('')]);
  const post = (...te: string[]) =>
    httpMessage(['POST /fhir/Patient HTTP/1.1', HOST, AUTH, 'Content-Type: application/fhir+json', ...te], body);
  // Refused while parsing (clientError handler, connection closed).
  for (const te of [
    ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
    ['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'],
    ['Transfer-Encoding: chunked, identity'],
    ['Transfer-Encoding: xchunked'],
    ['Transfer-Encoding : chunked'],
    [' Transfer-Encoding: chunked'],
  ]) {
    await refused(t, post(...te), 400, 'BAD_REQUEST', te.join(' / '));
  }
  // Read as chunked by Node: the upstream gets one plain, gateway-made framing (a create is
  // rewritten and spooled first, so it goes on with the exact Content-Length of the rewrite).
  for (const te of [['Transfer-Encoding: identity, chunked'], ['Transfer-Encoding: CHUNKED'], ['Transfer-Encoding:\tchunked']]) {
    const before = up.requests.length;
    const res = await rawRequest(port, post(...te));
    t.equal(res.statusCode, 201, te.join(' / '));
    const got = up.requests.slice(before);
    t.equal(got.length, 1, 'one request upstream');
    t.equal(got[0]?.headers['transfer-encoding'], undefined, 'no transfer coding upstream');
    t.equal(got[0]?.headers['content-length'], String(JSON.stringify({ resourceType: 'Patient' }).length), 'framed by the gateway');
  }
});

t.test('a body on GET is refused and cannot smuggle a second request', async (t) => {
  const before = up.requests.length;
  const smuggled = `GET /fhir/Binary/${BIN} HTTP/1.1\r\n${HOST}\r\n${AUTH}\r\n\r\n`;
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  await conn.write(
    Buffer.concat([
      httpMessage([`GET /fhir/Patient/${PID} HTTP/1.1`, HOST, AUTH, 'Transfer-Encoding: chunked']),
      chunk(smuggled),
      chunk(''),
    ]),
  );
  const res = await conn.readResponse();
  t.equal(res.statusCode, 400);
  t.equal(outcomeCode(res.body), 'BAD_REQUEST');
  // Whatever the gateway does with the connection next, the embedded request is never answered:
  // once the refused exchange is over, a bounded wait for a second response that must not come.
  await gw.accessLine(res.headers['x-request-id']);
  const more = await conn.readResponse({ timeoutMs: 3 * QUIET_MS }).then(
    (r) => r,
    () => undefined,
  );
  t.equal(more, undefined, 'no second response (the chunk was not read as a request)');
  t.same(up.requests.slice(before), [], 'the upstream received nothing');

  await refused(
    t,
    httpMessage([`GET /fhir/Patient/${PID} HTTP/1.1`, HOST, AUTH, 'Content-Length: 5'], 'hello'),
    400,
    'BAD_REQUEST',
    'declared length on GET',
  );
  await refused(
    t,
    httpMessage(
      [`DELETE /fhir/Patient/${PID} HTTP/1.1`, HOST, AUTH, 'Transfer-Encoding: chunked'],
      Buffer.concat([chunk('{}'), chunk('')]),
    ),
    400,
    'BAD_REQUEST',
    'chunked DELETE',
  );
  await refused(
    t,
    httpMessage([`HEAD /fhir/Patient/${PID} HTTP/1.1`, HOST, AUTH, 'Content-Length: 2'], '{}'),
    400,
    null,
    'HEAD with a body',
    true,
  );
});

t.test('a refused GET whose body is still coming closes the connection instead of draining it', async (t) => {
  const before = up.requests.length;
  const conn = await RawConnection.connect(port);
  t.teardown(() => conn.close());
  // An unterminated chunked body: the client could keep this going for as long as it likes.
  await conn.write(
    Buffer.concat([httpMessage([`GET /fhir/Patient/${PID} HTTP/1.1`, HOST, AUTH, 'Transfer-Encoding: chunked']), chunk('x'.repeat(1000))]),
  );
  const res = await conn.readResponse();
  t.equal(res.statusCode, 400);
  t.equal(outcomeCode(res.body), 'BAD_REQUEST');
  t.equal(res.headers.connection, 'close', 'announced');
  t.ok(await conn.waitClosed(), 'and done: the gateway does not read the rest of the body');
  t.same(up.requests.slice(before), [], 'the upstream received nothing');
});

t.test('error responses are XML when the client asks for XML', async (t) => {
  const viaAccept = await refused(t, get('/fhir/patient/1', 'Accept: application/fhir+xml'), 400, null, 'Accept');
  t.match(viaAccept.headers['content-type'], /^application\/fhir\+xml/);
  t.match(viaAccept.body.toString(), /^<\?xml [^>]*\?><OperationOutcome xmlns="http:\/\/hl7.org\/fhir">/);
  t.match(viaAccept.body.toString(), /<code value="AMBIGUOUS_PATH"\/>/);

  const viaFormat = await refused(t, get('/fhir/Patient/1?_format=xml', 'X-HTTP-Method-Override: DELETE'), 400, null, '_format=xml');
  t.match(viaFormat.headers['content-type'], /^application\/fhir\+xml/);
  t.match(viaFormat.body.toString(), /<code value="METHOD_OVERRIDE"\/>/);

  const viaFormatMime = await refused(
    t,
    get('/fhir/Patient/1?_format=application/fhir%2Bxml', AUTH),
    400,
    null,
    '_format=application/fhir+xml',
  );
  t.match(viaFormatMime.body.toString(), /<code value="DUPLICATE_HEADER"\/>/);

  // _format overrides Accept (FHIR http.html): JSON asked in _format wins over an XML Accept.
  const jsonWins = await refused(
    t,
    get('/fhir/patient/1?_format=json', 'Accept: application/fhir+xml'),
    400,
    'AMBIGUOUS_PATH',
    '_format=json over Accept xml',
  );
  t.match(jsonWins.headers['content-type'], /^application\/fhir\+json/);
});
