/**
 * The read rewrite of every pass-through answer (src/rewrite/response-rewrite.ts), for the answers
 * it must not rewrite: bodiless ones are relayed as they came, error pages too, and a success it
 * cannot read (not JSON, or compressed) is refused rather than passed on unchecked.
 */
import { gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { outcomeCode, startRecordingServer } from '../helpers/raw-http.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds' } });
const auth = { authorization: `Bearer ${token}` };
const PATIENT = JSON.stringify({ resourceType: 'Patient', id: 'p1' });

/** A gateway in front of an upstream that answers every request with `status`, `headers` and `body`. */
async function answering(t: Test, status: number, headers: Record<string, string>, body: string | Buffer = ''): Promise<string> {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  return gw.base;
}

// A HEAD's Content-Length is not relayed: the upstream's is the length of the resource before the
// rewrite its GET would get (attack rewritten-head-304-headers); Cache-Control is the content's.
t.test('a HEAD is relayed with the upstream headers, no body, no upstream length, the content Cache-Control', async (t) => {
  const base = await answering(t, 200, { 'content-type': 'application/fhir+json', 'content-length': String(PATIENT.length) }, PATIENT);
  const res = await fetch(`${base}/Patient/p1`, { method: 'HEAD', headers: auth });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-length'), null);
  t.equal(res.headers.get('cache-control'), 'no-store');
  t.match(res.headers.get('content-type'), /^application\/fhir\+json/);
  t.equal((await res.arrayBuffer()).byteLength, 0);
});

t.test('a 204 and a 304 are relayed as they came, with the content Cache-Control', async (t) => {
  for (const status of [204, 304]) {
    const base = await answering(t, status, { etag: 'W/"3"' });
    const res = await fetch(`${base}/Patient/p1`, { headers: auth });
    t.equal(res.status, status);
    t.equal(res.headers.get('etag'), 'W/"3"');
    t.equal(res.headers.get('cache-control'), 'no-store');
    t.equal((await res.arrayBuffer()).byteLength, 0);
  }
});

t.test("an upstream's error page that is not JSON reaches the client unchanged", async (t) => {
  const page = '<html><body>Not here</body></html>';
  const base = await answering(t, 404, { 'content-type': 'text/html' }, page);
  const res = await fetch(`${base}/Patient/missing`, { headers: auth });
  t.equal(res.status, 404);
  t.equal(res.headers.get('content-type'), 'text/html');
  t.equal(await res.text(), page);
});

t.test('a success the gateway cannot read is refused with UPSTREAM_INVALID, not passed on', async (t) => {
  const html = await answering(t, 200, { 'content-type': 'text/html' }, '<p>{"data":"secret"}</p>');
  const res = await fetch(`${html}/Patient/p1`, { headers: auth });
  t.equal(res.status, 502);
  const body = await res.text();
  t.equal(outcomeCode(body), 'UPSTREAM_INVALID');
  t.match(body, /text\/html/);
  t.notMatch(body, /secret/);

  const zipped = gzipSync(PATIENT);
  const gz = await answering(t, 200, { 'content-type': 'application/fhir+json', 'content-encoding': 'gzip' }, zipped);
  const res2 = await fetch(`${gz}/Patient/p1`, { headers: auth });
  t.equal(res2.status, 502);
  const body2 = await res2.text();
  t.equal(outcomeCode(body2), 'UPSTREAM_INVALID');
  t.match(body2, /compressed/);
});

t.test('a writer who may not read gets no resource in an error answer either; guarded error pages unread are left out', async (t) => {
  // Found from outside: a 412 carrying the current version, and error pages relayed unread on guarded exchanges.
  const writer = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/Patient.u fhir.write' } })}` };
  const put = (base: string) =>
    fetch(`${base}/Patient/p1`, { method: 'PUT', headers: { ...writer, 'content-type': 'application/fhir+json' }, body: PATIENT });
  const resource = await put(
    await answering(t, 412, { 'content-type': 'application/fhir+json', 'content-length': String(PATIENT.length) }, PATIENT),
  );
  t.equal(resource.status, 412, 'the status is told');
  t.equal(await resource.text(), '', 'the resource is not');
  const oo = JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'conflict' }] });
  const refused = await put(await answering(t, 412, { 'content-type': 'application/fhir+json', 'content-length': String(oo.length) }, oo));
  t.same(await refused.json(), JSON.parse(oo), 'an OperationOutcome is');
  const big = JSON.stringify({
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'x', diagnostics: 'y'.repeat(70_000) }],
  });
  const large = await put(await answering(t, 409, { 'content-type': 'application/fhir+json' }, big));
  t.equal(large.status, 409);
  t.equal(await large.text(), '', 'an answer too large to look at is left out');
  const page = await fetch(`${await answering(t, 500, { 'content-type': 'text/html' }, '<html>Patient p2</html>')}/Patient?name=x`, {
    headers: auth,
  });
  t.equal(page.status, 500, 'a guarded search');
  t.equal(await page.text(), '', 'its error page unread is left out');
});
