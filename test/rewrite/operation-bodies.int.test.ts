// Operation bodies through the running gateway against Medplum's FHIR router: an operation may
// store what it receives, so its body is held to the write rules (no attachment data at or above
// externalize.minBytes, no blob reference of ours) and sent on unchanged otherwise.
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { code, PDF, stack, type Stack } from '../helpers/binary-stack.js';

const op = (s: Stack, body: string | Buffer, contentType = 'application/fhir+json', path = 'DocumentReference/$validate') =>
  fetch(`${s.gw.base}/${path}`, { method: 'POST', headers: { ...s.auth, 'content-type': contentType }, body });
const docRef = (data: Buffer) => ({
  resourceType: 'DocumentReference',
  status: 'current',
  content: [{ attachment: { contentType: 'application/pdf', data: data.toString('base64') } }],
});
const upstreamOps = (s: Stack) => s.up.requests.filter((r) => r.url.includes('$validate')).length;

t.test('small attachment data passes to the upstream unchanged; the answer comes back', async (t) => {
  const s = await stack(t);
  const body = JSON.stringify(docRef(PDF(1000)));
  const r = await op(s, body);
  // Medplum's router has no DocumentReference/$validate: its own 404 comes back, not a refusal of ours.
  t.equal(r.status, 404);
  t.equal(((await r.json()) as { resourceType: string }).resourceType, 'OperationOutcome');
  const seen = s.up.requests.filter((x) => x.url.includes('$validate'));
  t.equal(seen.length, 1);
  t.equal(seen[0].bodyBytes, Buffer.byteLength(body), 'the body arrived whole, with its length');
  t.equal(seen[0].headers['content-length'], String(Buffer.byteLength(body)));
});

t.test('attachment data at or above externalize.minBytes is refused before the upstream, declared or streamed', async (t) => {
  const s = await stack(t);
  const body = JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'resource', resource: docRef(PDF(70_000)) }] });
  const r = await op(s, body);
  t.equal(r.status, 413);
  t.equal(await code(r), 'PAYLOAD_TOO_LARGE');
  const streamed = await fetch(`${s.gw.base}/DocumentReference/$validate`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: new Blob([body]).stream(),
    duplex: 'half',
  });
  t.equal(streamed.status, 413, 'chunked too');
  await streamed.arrayBuffer();
  t.equal(upstreamOps(s), 0, 'the upstream saw neither');
});

t.test('a blob reference of ours is refused; bodies that cannot be checked are refused; form parameters pass', async (t) => {
  const s = await stack(t);
  const injected = await op(
    s,
    JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', _data: { extension: [{ url: BLOB_EXTENSION_URL, extension: [] }] } } }],
    }),
  );
  t.equal(injected.status, 400);
  t.equal(await code(injected), 'BAD_REQUEST');
  const xml = await op(s, '<DocumentReference xmlns="http://hl7.org/fhir"/>', 'application/fhir+xml');
  t.equal(xml.status, 415);
  t.match(await xml.text(), /application\/fhir\+json/);
  const raw = await op(s, PDF(100), 'application/octet-stream');
  t.equal(raw.status, 415);
  await raw.arrayBuffer();
  t.equal(upstreamOps(s), 0);
  const form = await op(s, 'code=abc', 'application/x-www-form-urlencoded', 'DocumentReference/$validate');
  t.not(form.status, 415, 'form-encoded parameters are passed on');
  await form.arrayBuffer();
  t.equal(upstreamOps(s), 1);
});

t.test('$graphql: a mutation hides resources inside a query string, so its body is bounded by externalize.minBytes', async (t) => {
  const s = await stack(t, { externalize: { minBytes: 2000 } });
  const mutation = (data: string) =>
    JSON.stringify({
      query: `mutation { DocumentReferenceCreate(res: { resourceType: "DocumentReference", status: "current", content: [{ attachment: { contentType: "text/plain", data: "${data}" } }] }) { id } }`,
    });
  const big = await op(s, mutation(Buffer.alloc(3000, 'x').toString('base64')), 'application/json', '$graphql');
  t.equal(big.status, 413);
  t.match(await big.text(), /graphql/);
  const streamed = await fetch(`${s.gw.base}/$graphql`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/json' },
    body: new Blob([mutation(Buffer.alloc(3000, 'x').toString('base64'))]).stream(),
    duplex: 'half',
  });
  t.equal(streamed.status, 413, 'streamed too');
  await streamed.arrayBuffer();
  t.equal(s.up.requests.filter((r) => r.url.includes('graphql')).length, 0, 'the upstream saw neither');
  const small = await op(s, JSON.stringify({ query: '{ PatientList { id } }' }), 'application/json', '$graphql');
  t.not(small.status, 413, 'an ordinary query passes');
  await small.arrayBuffer();
  t.equal(s.up.requests.filter((r) => r.url.includes('graphql')).length, 1);
});

t.test('$graphql in a form or as application/graphql is bounded too', async (t) => {
  const s = await stack(t, { externalize: { minBytes: 2000 } });
  for (const type of ['application/x-www-form-urlencoded', 'application/graphql']) {
    const r = await op(s, `query=${'x'.repeat(3000)}`, type, '$graphql');
    t.equal(r.status, 413, type);
    await r.arrayBuffer();
  }
  t.equal(s.up.requests.filter((r) => r.url.includes('graphql')).length, 0);
});
