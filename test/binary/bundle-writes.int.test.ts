// Batch/transaction Bundles through the running gateway against Medplum's router: entries'
// attachment data is externalized and checked; the upstream's answer settles each blob.
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { code, PDF, PNG, stack, type Stack } from '../helpers/binary-stack.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startRecordingServer } from '../helpers/raw-http.js';

const BUNDLE_RULE = { name: 'bundles', match: { interactions: ['batch', 'transaction'] }, require: { smart: false } };
const post = (s: Stack, bundle: unknown) =>
  fetch(`${s.gw.base}`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/fhir+json' }, body: JSON.stringify(bundle) });
const docRef = (data: Buffer, type = 'application/pdf') => ({
  resourceType: 'DocumentReference',
  status: 'current',
  content: [{ attachment: { contentType: type, data: data.toString('base64') } }],
});
const held = async (s: Stack, path: string) =>
  (await fetch(`${s.up.url}/${path}`, { headers: { accept: 'application/fhir+json' } })).json() as Promise<Record<string, any>>;
const blobs = (s: Stack) => s.gw.blobFiles().filter((f) => f.endsWith('.blob'));
const meta = async (s: Stack, id: string) =>
  JSON.parse(await readFile(`${s.gw.blobDir}/${id.slice(0, 2)}/${id.slice(2, 4)}/${id}.json`, 'utf8')) as Record<string, unknown>;

t.test('a transaction: every entry externalized; blobs linked to the entries’ new resources', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const pdf = PDF(150_000);
  const r = await post(s, {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { request: { method: 'POST', url: 'Patient' }, resource: { resourceType: 'Patient' } },
      { request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(pdf) },
    ],
  });
  t.equal(r.status, 200);
  const resp = (await r.json()) as { entry: { response: { location: string } }[] };
  const id = resp.entry[1].response.location.split('/')[1];
  const doc = await held(s, `DocumentReference/${id}`);
  t.equal(doc.content[0].attachment.data, undefined, 'no data upstream');
  t.equal(doc.content[0].attachment.size, pdf.length);
  const ref = findBlobRef(doc.content[0].attachment._data.extension)!;
  t.match(await meta(s, ref.id), { state: 'linked', owner: `DocumentReference/${id}` });
  const back = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.ok(Buffer.from(await back.arrayBuffer()).equals(pdf), 'readable through the gateway');
});

t.test('each entry’s outcome settles its blobs: failed entries lose theirs, successful ones are linked', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  // An update whose body names another id than its url: the upstream refuses that entry.
  const failing = (data: Buffer) => ({
    request: { method: 'PUT', url: 'DocumentReference/yyy' },
    resource: { ...docRef(data), id: 'zzz' },
  });
  for (const type of ['batch', 'transaction'] as const) {
    const before = blobs(s).length;
    const r = await post(s, {
      resourceType: 'Bundle',
      type,
      entry: [{ request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(PDF(100_000)) }, failing(PDF(110_000))],
    });
    const out = (await r.json()) as { entry?: { response: { status: string; location?: string } }[] };
    if (r.status >= 400) {
      t.equal(blobs(s).length, before, `${type} refused whole (${r.status}): nothing kept`);
      continue;
    }
    // Medplum's router runs a transaction entry by entry: its response says which ones held.
    t.match(out.entry![0].response.status, /^201/, `${type}: the valid entry was created`);
    t.notMatch(out.entry![1].response.status, /^2/, `${type}: the other failed`);
    t.equal(blobs(s).length, before + 1, `${type}: only the created entry’s blob is kept`);
    const id = out.entry![0].response.location!.split('/')[1];
    const ref = findBlobRef((await held(s, `DocumentReference/${id}`)).content[0].attachment._data.extension)!;
    t.match(await meta(s, ref.id), { state: 'linked', owner: `DocumentReference/${id}` });
  }
});

t.test('a transaction the upstream refuses whole leaves no blob', async (t) => {
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(400, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }));
    });
  });
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { rules: [BUNDLE_RULE] } });
  const token = await mintToken(key, { claims: { scope: 'user/*.cruds' } });
  const r = await fetch(`${gw.base}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(PDF(100_000)) }],
    }),
  });
  t.equal(r.status, 400, "the upstream's answer is relayed");
  await r.arrayBuffer();
  t.equal(up.requests.length, 1, 'the rewritten Bundle reached the upstream');
  t.same(gw.blobFiles(), [], 'its blob was removed');
});

t.test('entries are checked like any write; Binary entries are refused', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const mismatch = await post(s, {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(PNG, 'application/pdf') }],
  });
  t.equal(mismatch.status, 415);
  const outcome = (await mismatch.json()) as { issue: { details: { coding: { code: string }[]; text: string } }[] };
  t.equal(outcome.issue[0].details.coding[0].code, 'UNSUPPORTED_MEDIA');
  t.match(outcome.issue[0].details.text, /Bundle entry 0: /, 'the refusal names the entry');
  const second = await post(s, {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(PDF(100_000), 'application/pdf') },
      { request: { method: 'POST', url: 'DocumentReference' }, resource: docRef(PNG, 'application/pdf') },
    ],
  });
  t.equal(second.status, 415);
  t.match(JSON.stringify(await second.json()), /Bundle entry 1: /, 'the second entry, by its index');
  const binary = await post(s, { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Binary/x' } }] });
  t.equal(binary.status, 400);
  t.equal(await code(binary), 'BAD_BUNDLE');
  t.same(blobs(s), [], 'nothing stored');
});
