import t from 'tap';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { startFhirUpstream } from '../../src/demo/fhir-upstream.js';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';
import { startUpstream } from '../helpers/upstream.js';

const FHIR_JSON = 'application/fhir+json';
const MAIN = fileURLToPath(new URL('../../src/demo/fhir-upstream-main.ts', import.meta.url));

interface FhirResource {
  resourceType: string;
  id: string;
  meta: { versionId: string; lastUpdated: string };
  [element: string]: unknown;
}
interface Bundle extends FhirResource {
  total: number;
  entry: { resource: FhirResource; response: { status: string } }[];
}

async function json<T = FhirResource>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

async function post(up: FhirUpstream, path: string, body: unknown): Promise<Response> {
  return fetch(`${up.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': FHIR_JSON },
    body: JSON.stringify(body),
  });
}

t.test('create answers 201 with an absolute Location under the upstream base', async (t) => {
  const up = await startUpstream(t);
  const res = await post(up, '/Patient', { resourceType: 'Patient', name: [{ family: 'Doe' }] });
  t.equal(res.status, 201);
  t.match(res.headers.get('content-type'), /^application\/fhir\+json/);
  const body = await json(res);
  t.match(body, { resourceType: 'Patient', name: [{ family: 'Doe' }], meta: { versionId: '1' } });
  t.equal(res.headers.get('location'), `${up.url}/Patient/${body.id}/_history/1`);
  t.equal(res.headers.get('content-location'), res.headers.get('location'));
  t.equal(res.headers.get('etag'), 'W/"1"');
});

t.test('read returns the resource with ETag and Last-Modified; versions count up', async (t) => {
  const up = await startUpstream(t);
  const created = await json(await post(up, '/Patient', { resourceType: 'Patient' }));

  const read = await fetch(`${up.url}/Patient/${created.id}`);
  t.equal(read.status, 200);
  t.equal(read.headers.get('etag'), 'W/"1"');
  t.equal(read.headers.get('last-modified'), new Date(created.meta.lastUpdated).toUTCString());
  t.match(await read.json(), { resourceType: 'Patient', id: created.id });

  const updated = await fetch(`${up.url}/Patient/${created.id}`, {
    method: 'PUT',
    headers: { 'content-type': FHIR_JSON, 'if-match': 'W/"1"' },
    body: JSON.stringify({ resourceType: 'Patient', id: created.id, active: true }),
  });
  t.equal(updated.status, 200);
  t.equal(updated.headers.get('etag'), 'W/"2"');
  t.equal(updated.headers.get('content-location'), `${up.url}/Patient/${created.id}/_history/2`);
  t.equal(updated.headers.get('location'), null, 'an update is not a create');

  const stale = await fetch(`${up.url}/Patient/${created.id}`, {
    method: 'PUT',
    headers: { 'content-type': FHIR_JSON, 'if-match': 'W/"1"' },
    body: JSON.stringify({ resourceType: 'Patient', id: created.id }),
  });
  t.equal(stale.status, 412);

  const vread = await json(await fetch(`${up.url}/Patient/${created.id}/_history/1`));
  t.notOk(vread.active, 'version 1 is the original');
  // Read twice: Medplum's repository flips its history order on every read.
  for (const attempt of [1, 2]) {
    const history = await json<Bundle>(await fetch(`${up.url}/Patient/${created.id}/_history`));
    const versions = history.entry.map((e) => e.resource.meta.versionId);
    t.same(versions, ['2', '1'], `history newest first (read ${attempt})`);
  }
});

t.test('update of a new id creates it with 201', async (t) => {
  const up = await startUpstream(t);
  const res = await fetch(`${up.url}/Patient/p1`, {
    method: 'PUT',
    headers: { 'content-type': FHIR_JSON },
    body: JSON.stringify({ resourceType: 'Patient', id: 'p1' }),
  });
  t.equal(res.status, 201);
  t.equal(res.headers.get('location'), `${up.url}/Patient/p1/_history/1`);
});

t.test('search honours the query string and returns a searchset Bundle', async (t) => {
  const up = await startUpstream(t);
  for (let i = 0; i < 7; i++) await post(up, '/Patient', { resourceType: 'Patient' });
  const res = await fetch(`${up.url}/Patient?_count=5`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('etag'), null, 'no ETag on a search result');
  const bundle = await json<Bundle>(res);
  t.match(bundle, { resourceType: 'Bundle', type: 'searchset', total: 7 });
  t.equal(bundle.entry.length, 5);
});

t.test('a transaction Bundle posted to the base resolves references between entries', async (t) => {
  const up = await startUpstream(t);
  const patientUrn = 'urn:uuid:9b4b7c1e-3f0a-4c3e-9d7e-0c4a5b6f7a81';
  const res = await post(up, '', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: patientUrn, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: patientUrn } },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  });
  t.equal(res.status, 200);
  const bundle = await json<Bundle>(res);
  t.match(bundle, { resourceType: 'Bundle', type: 'transaction-response' });
  t.same(
    bundle.entry.map((e) => e.response.status),
    ['201', '201'],
  );

  const observations = await json<Bundle>(await fetch(`${up.url}/Observation`));
  const patients = await json<Bundle>(await fetch(`${up.url}/Patient`));
  t.match(observations.entry[0]?.resource, { subject: { reference: `Patient/${patients.entry[0]?.resource.id}` } });
});

t.test('raw Binary: bytes in, same bytes or a Binary resource out depending on Accept', async (t) => {
  const up = await startUpstream(t);
  // Every byte value, so any text decoding on the way would show.
  const pdf = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]);
  const created = await fetch(`${up.url}/Binary`, {
    method: 'POST',
    headers: { 'content-type': 'application/pdf', 'x-security-context': 'Patient/p1' },
    body: pdf,
  });
  t.equal(created.status, 201);
  const location = created.headers.get('location') ?? '';
  t.match(location, new RegExp(`^${up.url}/Binary/[^/]+/_history/1$`));
  t.match(await created.json(), { resourceType: 'Binary' }, 'a create answers with the resource');
  const readUrl = location.replace(/\/_history\/1$/, '');

  for (const url of [readUrl, location]) {
    const raw = await fetch(url, { headers: { accept: 'application/pdf' } });
    t.equal(raw.status, 200);
    t.equal(raw.headers.get('content-type'), 'application/pdf');
    t.equal(raw.headers.get('etag'), 'W/"1"');
    t.ok(Buffer.from(await raw.arrayBuffer()).equals(pdf), `identical bytes from ${url.slice(up.url.length)}`);
  }

  const asJson = await fetch(readUrl, { headers: { accept: FHIR_JSON } });
  t.match(asJson.headers.get('content-type'), /^application\/fhir\+json/);
  const binary = await json(asJson);
  t.match(binary, { resourceType: 'Binary', contentType: 'application/pdf', securityContext: { reference: 'Patient/p1' } });
  t.equal(binary.data, pdf.toString('base64'));
});

t.test('HEAD answers like GET without a body', async (t) => {
  const up = await startUpstream(t);
  const created = await json(await post(up, '/Patient', { resourceType: 'Patient' }));
  const get = await fetch(`${up.url}/Patient/${created.id}`);
  const getBody = await get.text();
  const head = await fetch(`${up.url}/Patient/${created.id}`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers.get('etag'), 'W/"1"');
  t.equal(head.headers.get('content-length'), String(Buffer.byteLength(getBody)));
  t.equal(await head.text(), '');
  t.equal((await fetch(`${up.url}/Patient/nope`, { method: 'HEAD' })).status, 404);
});

t.test('refusals are OperationOutcomes with the right status', async (t) => {
  const up = await startUpstream(t);
  const root = up.url.slice(0, -'/fhir'.length);
  for (const path of [`${root}/Patient`, `${root}/fhirx/Patient`, `${root}/`]) {
    const res = await fetch(path);
    t.equal(res.status, 404, `${path.slice(root.length)} is outside the base`);
    t.match(await res.json(), { resourceType: 'OperationOutcome', issue: [{ code: 'not-found' }] });
  }
  const badJson = await fetch(`${up.url}/Patient`, { method: 'POST', headers: { 'content-type': FHIR_JSON }, body: '{' });
  t.equal(badJson.status, 400);
  t.match(await badJson.json(), { resourceType: 'OperationOutcome', issue: [{ code: 'structure' }] });
  const xml = await fetch(`${up.url}/Patient`, { method: 'POST', headers: { 'content-type': 'application/fhir+xml' }, body: '<Patient/>' });
  t.equal(xml.status, 415);
});

t.test('GET metadata returns a CapabilityStatement', async (t) => {
  const up = await startUpstream(t);
  const res = await fetch(`${up.url}/metadata`);
  t.equal(res.status, 200);
  const cs = await json<FhirResource & { rest: { resource: { type: string }[] }[] }>(res);
  t.match(cs, { resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', rest: [{ mode: 'server' }] });
  t.ok(cs.rest[0]?.resource.some((r) => r.type === 'Binary'));
});

t.test('every request is recorded as received', async (t) => {
  const up = await startUpstream(t);
  const body = JSON.stringify({ resourceType: 'Patient' });
  await fetch(`${up.url}/Patient?_tag=a&_tag=b`, {
    method: 'POST',
    headers: { 'content-type': FHIR_JSON, authorization: 'Bearer x', 'x-forwarded-for': '10.0.0.1' },
    body,
  });
  await fetch(`${up.url.slice(0, -'/fhir'.length)}/elsewhere`);
  t.equal(up.requests.length, 2);
  t.match(up.requests[0], {
    method: 'POST',
    url: '/fhir/Patient?_tag=a&_tag=b',
    headers: { authorization: 'Bearer x', 'x-forwarded-for': '10.0.0.1', 'content-type': FHIR_JSON },
    bodyBytes: Buffer.byteLength(body),
  });
  t.match(up.requests[1], { method: 'GET', url: '/elsewhere', bodyBytes: 0 });
});

t.test('a custom base path and close() with a kept-alive connection', async (t) => {
  const up = await startFhirUpstream({ basePath: '/r4/' });
  t.match(up.url, /^http:\/\/127\.0\.0\.1:\d+\/r4$/);
  t.equal((await fetch(`${up.url}/metadata`)).status, 200);
  await up.close();
  await t.rejects(fetch(`${up.url}/metadata`));
});

function waitForExit(child: ChildProcess): Promise<[number | null, NodeJS.Signals | null]> {
  return once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
}

t.test('the child-process entry reports its url and stops on SIGTERM or disconnect', async (t) => {
  for (const stop of ['SIGTERM', 'disconnect'] as const) {
    const child = fork(MAIN, { execArgv: ['--import=tsx', '--experimental-websocket'], stdio: 'pipe' });
    const exited = waitForExit(child);
    t.teardown(() => child.kill());
    const [message] = (await once(child, 'message')) as [{ url: string }];
    t.match(message.url, /^http:\/\/127\.0\.0\.1:\d+\/fhir$/);
    t.equal((await fetch(`${message.url}/metadata`)).status, 200);
    if (stop === 'SIGTERM') child.kill('SIGTERM');
    else child.disconnect();
    t.same(await exited, [0, null], `exits cleanly on ${stop}`);
  }
});

t.test('the child-process entry explains a missing --experimental-websocket', async (t) => {
  const child = fork(MAIN, { execArgv: ['--import=tsx'], stdio: 'pipe' });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = await waitForExit(child);
  t.equal(code, 1);
  t.match(stderr, /--experimental-websocket/);
});
