/**
 * Scope bypass classes through the running gateway with real tokens: literal scopes required by a
 * rule, SMART v1/v2 clinical scopes, patient context, v2 search restrictions, and Bundles used to
 * smuggle an interaction past its rule. Every refusal checks that the upstream saw nothing.
 */
import t, { type Test } from 'tap';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { httpMessage, outcomeCode, portOf, RawConnection } from '../helpers/raw-http.js';
import { startUpstream } from '../helpers/upstream.js';

const up: FhirUpstream = await startUpstream(t);
const key = await makeKey('scopes-k1');
const jwks = await startJwksServer(t, [key]);
const gw = await startTestGateway(t, {
  upstream: up.url,
  jwksUri: jwks.url,
  config: {
    rules: [
      {
        name: 'binary-writes',
        match: { interactions: ['create'], resourceTypes: ['Binary', 'DocumentReference'] },
        require: { scopes: ['files.write', 'fhir.write'] },
      },
      // Bundles are authorized entry by entry; the Bundle itself needs no SMART grant.
      { name: 'bundles', match: { interactions: ['batch', 'transaction'] }, require: { smart: false } },
    ],
  },
});

async function upstreamCreate(resource: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${up.url}/${String(resource['resourceType'])}`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  return ((await res.json()) as { id: string }).id;
}

const patientId = await upstreamCreate({ resourceType: 'Patient', name: [{ family: 'Scoped' }] });
const otherPatientId = await upstreamCreate({ resourceType: 'Patient', name: [{ family: 'Other' }] });
const obsId = await upstreamCreate({
  resourceType: 'Observation',
  status: 'final',
  code: { text: 'glucose' },
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
  subject: { reference: `Patient/${patientId}` },
});

type Claims = Record<string, unknown>;
const tokenWith = (claims: Claims) => mintToken(key, { claims });
const scoped = (scope: string, extra: Claims = {}) => tokenWith({ scope, ...extra });

interface Call {
  method?: string;
  path: string;
  body?: unknown;
}

function send(tok: string, call: Call): Promise<Response> {
  return fetch(`${gw.base}/${call.path}`, {
    method: call.method ?? 'GET',
    headers: {
      authorization: `Bearer ${tok}`,
      ...(call.body === undefined ? {} : { 'content-type': 'application/fhir+json' }),
    },
    ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
  });
}

/** 403 insufficient_scope, with exactly this scope in the challenge, and nothing upstream. */
async function insufficient(t: Test, tok: string, call: Call, scope: string, msg: string): Promise<void> {
  const before = up.requests.length;
  const res = await send(tok, call);
  t.equal(res.status, 403, `${msg}: 403`);
  t.equal(res.headers.get('www-authenticate'), `Bearer error="insufficient_scope", scope="${scope}"`, `${msg}: challenge names ${scope}`);
  const body = (await res.json()) as { issue: { code: string; details: { coding: { code: string }[] } }[] };
  t.equal(body.issue[0]?.details.coding[0]?.code, 'INSUFFICIENT_SCOPE', `${msg}: INSUFFICIENT_SCOPE`);
  t.equal(body.issue[0]?.code, 'forbidden');
  t.equal(up.requests.length, before, `${msg}: nothing reached the upstream`);
}

async function allowed(t: Test, tok: string, call: Call, status: number, msg: string): Promise<Response> {
  const before = up.requests.length;
  const res = await send(tok, call);
  t.equal(res.status, status, `${msg}: ${status}`);
  t.equal(up.requests.length, before + 1, `${msg}: forwarded`);
  return res;
}

const binary = { resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('hello').toString('base64') };
const docRef = {
  resourceType: 'DocumentReference',
  status: 'current',
  content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('hello').toString('base64') } }],
};
const CREATE_BINARY: Call = { method: 'POST', path: 'Binary', body: binary };
const CREATE_DOCREF: Call = { method: 'POST', path: 'DocumentReference', body: docRef };

t.test('a rule requiring files.write and fhir.write: one missing → 403 insufficient_scope naming it; both → 201', async (t) => {
  const smart = 'user/Binary.c user/DocumentReference.c';
  for (const call of [CREATE_BINARY, CREATE_DOCREF]) {
    const what = `create ${call.path}`;
    await insufficient(t, await scoped(`files.write ${smart}`), call, 'fhir.write', `${what} without fhir.write`);
    await insufficient(t, await scoped(`fhir.write ${smart}`), call, 'files.write', `${what} without files.write`);
    await insufficient(t, await scoped(smart), call, 'files.write fhir.write', `${what} without either`);
    const res = await allowed(t, await scoped(`files.write fhir.write ${smart}`), call, 201, `${what} with both`);
    t.match(res.headers.get('location'), new RegExp(`/${call.path}/[^/]+/_history/1$`));
  }
});

t.test('literal scopes are matched exactly: no case folding, no comma splitting, no prefix match', async (t) => {
  const smart = 'user/Binary.c';
  await insufficient(t, await scoped(`FILES.WRITE fhir.write ${smart}`), CREATE_BINARY, 'files.write', 'upper case');
  await insufficient(t, await scoped(`files.write,fhir.write ${smart}`), CREATE_BINARY, 'files.write fhir.write', 'comma-separated');
  await insufficient(t, await scoped(`files.write.all fhir.write ${smart}`), CREATE_BINARY, 'files.write', 'a longer scope');
  await insufficient(t, await scoped(`files.writ fhir.write ${smart}`), CREATE_BINARY, 'files.write', 'a prefix');
  await insufficient(
    t,
    await scoped(`files.write\tfhir.write ${smart}`),
    CREATE_BINARY,
    'files.write fhir.write',
    'tab-separated (not a scope delimiter)',
  );
  await insufficient(
    t,
    await tokenWith({ scope: ['files.write', 'fhir.write', smart] }),
    CREATE_BINARY,
    'files.write fhir.write',
    '`scope` as an array (must be a string)',
  );
});

t.test('the rule scopes do not replace SMART: files.write + fhir.write alone cannot create a Binary', async (t) => {
  await insufficient(t, await scoped('files.write fhir.write'), CREATE_BINARY, 'user/Binary.c', 'no SMART grant');
  await insufficient(t, await scoped('files.write fhir.write user/Binary.rs'), CREATE_BINARY, 'user/Binary.c', 'read-only SMART grant');
});

t.test('a transaction Bundle cannot smuggle a Binary create past the binary-writes rule', async (t) => {
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: { resourceType: 'Patient', name: [{ family: 'Cover' }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: binary, request: { method: 'POST', url: 'Binary' } },
    ],
  };
  // Binary is written only at its own endpoints (the binary plane's checks cannot run inside a
  // Bundle): refused whatever the token holds.
  for (const scopes of ['user/*.cruds fhir.write', 'user/*.cruds fhir.write files.write']) {
    const res = await fetch(`${gw.base}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await scoped(scopes)}`, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(bundle),
    });
    t.equal(res.status, 400, scopes);
    t.match(await res.json(), { issue: [{ details: { coding: [{ code: 'BAD_BUNDLE' }] } }] });
  }
});

t.test('SMART v1 user/Patient.read can read and search Patient but not create, update, delete, or read other types', async (t) => {
  const tok = await scoped('user/Patient.read');
  await allowed(t, tok, { path: `Patient/${patientId}` }, 200, 'read');
  await allowed(t, tok, { path: 'Patient?name=Scoped' }, 200, 'search');
  await insufficient(t, tok, { method: 'POST', path: 'Patient', body: { resourceType: 'Patient' } }, 'user/Patient.c', 'create');
  await insufficient(
    t,
    tok,
    { method: 'PUT', path: `Patient/${patientId}`, body: { resourceType: 'Patient', id: patientId } },
    'user/Patient.u',
    'update',
  );
  await insufficient(t, tok, { method: 'DELETE', path: `Patient/${patientId}` }, 'user/Patient.d', 'delete');
  await insufficient(t, tok, { path: `Observation/${obsId}` }, 'user/Observation.r', 'read another type');
  await insufficient(t, tok, { path: 'Patient?_revinclude=Observation:subject' }, 'user/Observation.s', 'search reaching other types');
  // v1 write grants c/u/d but not r/s.
  const write = await scoped('user/Patient.write');
  await allowed(t, write, { method: 'POST', path: 'Patient', body: { resourceType: 'Patient' } }, 201, 'v1 write creates');
  await insufficient(t, write, { path: `Patient/${patientId}` }, 'user/Patient.r', 'v1 write does not read');
});

t.test('SMART v2 patient/Observation.rs with a patient claim: only searches pinned to that patient', async (t) => {
  const tok = await scoped('patient/Observation.rs', { patient: patientId });
  const res = await allowed(t, tok, { path: `Observation?patient=${patientId}` }, 200, 'patient=<own id>');
  t.match(await res.json(), { resourceType: 'Bundle', entry: [{ resource: { id: obsId } }] });
  await allowed(t, tok, { path: `Observation?patient=Patient/${patientId}` }, 200, 'patient=Patient/<own id>');
  await allowed(t, tok, { path: `Observation?subject=Patient/${patientId}` }, 200, 'subject=Patient/<own id>');
  // Forwarded: the in-memory upstream has no compartment search route and answers 404 itself.
  await allowed(t, tok, { path: `Patient/${patientId}/Observation` }, 404, 'compartment search');

  await insufficient(t, tok, { path: `Observation?patient=${otherPatientId}` }, 'patient/Observation.s', 'another patient');
  await insufficient(t, tok, { path: 'Observation' }, 'patient/Observation.s', 'no patient parameter');
  await insufficient(t, tok, { path: 'Observation?code=glucose' }, 'patient/Observation.s', 'other parameters only');
  await insufficient(
    t,
    tok,
    { path: `Observation?patient=${patientId}&patient=${otherPatientId}` },
    'patient/Observation.s',
    'the parameter twice',
  );
  await insufficient(t, tok, { path: `Observation?patient=${patientId},${otherPatientId}` }, 'patient/Observation.s', 'an OR list');
  await insufficient(t, tok, { path: 'Observation?patient:missing=true' }, 'patient/Observation.s', 'a modifier');
  const include = await send(tok, { path: `Observation?patient=${patientId}&_include=Observation:performer` });
  t.equal(include.status, 403, '_include reaching other types');
  t.equal(include.headers.get('www-authenticate'), 'Bearer error="insufficient_scope"', 'no scope a patient app could get would do');
  t.match(await include.text(), /a patient-scoped token reaches only the launch patient's compartment/);
  await insufficient(t, tok, { path: `Patient/${otherPatientId}/Observation` }, 'patient/Observation.s', "another patient's compartment");
  // A read by id is served once the upstream confirms the Observation is the patient's (test/attack/patient-app.int.test.ts).
  const read = await send(tok, { path: `Observation/${obsId}` });
  t.equal(read.status, 200, "a read by id of the patient's own Observation");
  await read.arrayBuffer();

  const noClaim = await scoped('patient/Observation.rs');
  await insufficient(t, noClaim, { path: `Observation?patient=${patientId}` }, 'patient/Observation.s', 'token without a patient claim');
  const claimNotString = await scoped('patient/Observation.rs', { patient: [patientId] });
  await insufficient(
    t,
    claimNotString,
    { path: `Observation?patient=${patientId}` },
    'patient/Observation.s',
    'patient claim not a string',
  );
});

t.test('the scp array claim carries scopes too', async (t) => {
  const tok = await tokenWith({ scp: ['user/Patient.rs', 'fhir.write'] });
  await allowed(t, tok, { path: `Patient/${patientId}` }, 200, 'scp read');
  await insufficient(t, tok, { method: 'POST', path: 'Patient', body: { resourceType: 'Patient' } }, 'user/Patient.c', 'scp has no c');
  const lit = await tokenWith({ scp: ['files.write', 'fhir.write', 'user/Binary.c'] });
  await allowed(t, lit, CREATE_BINARY, 201, 'scp satisfies the literal scopes of binary-writes');
  const glued = await tokenWith({ scp: ['files.write fhir.write', 'user/Binary.c'] });
  await insufficient(t, glued, CREATE_BINARY, 'files.write fhir.write', 'an array element with a space is not split');
});

t.test('a v2 restricted scope (user/Observation.rs?category=laboratory) grants only searches carrying that restriction', async (t) => {
  const tok = await scoped('user/Observation.rs?category=laboratory');
  const res = await allowed(t, tok, { path: 'Observation?category=laboratory' }, 200, 'category=laboratory');
  t.match(await res.json(), { resourceType: 'Bundle', entry: [{ resource: { id: obsId } }] });
  await allowed(t, tok, { path: `Observation?category=laboratory&patient=${patientId}` }, 200, 'an extra parameter only narrows');

  await insufficient(t, tok, { path: 'Observation?category=vital-signs' }, 'user/Observation.s', 'category=vital-signs');
  await insufficient(
    t,
    tok,
    { path: 'Observation?category=laboratory,vital-signs' },
    'user/Observation.s',
    'category=laboratory,vital-signs (OR)',
  );
  await insufficient(t, tok, { path: 'Observation?category=laboratory&category=vital-signs' }, 'user/Observation.s', 'category twice');
  await insufficient(t, tok, { path: 'Observation?category:not=vital-signs' }, 'user/Observation.s', 'a modifier');
  await insufficient(t, tok, { path: 'Observation' }, 'user/Observation.s', 'no category');
  await insufficient(t, tok, { path: `Observation/${obsId}` }, 'user/Observation.r', 'a read');
  await insufficient(t, tok, { path: 'Observation?category=laboratory&_revinclude=Provenance:target' }, 'user/Provenance.s', '_revinclude');
});

t.test(
  'one keep-alive connection, several callers: each request is judged by its own token, never the last one accepted on the connection',
  async (t) => {
    // A proxy in front of the gateway multiplexes users over one connection; the gateway remembers
    // the last accepted token per connection (a hot-path shortcut), which must never leak to the next request.
    const wide = await scoped('user/*.read');
    const narrow = await scoped('user/Observation.rs');
    const conn = await RawConnection.connect(portOf(gw.url));
    t.teardown(() => conn.close());
    const get = async (path: string, auth: string | undefined): Promise<{ status: number; code: string | undefined }> => {
      const head = [`GET ${new URL(gw.base).pathname}/${path} HTTP/1.1`, 'Host: gateway.test', ...(auth ? [`Authorization: ${auth}`] : [])];
      await conn.write(httpMessage(head));
      const res = await conn.readResponse();
      return { status: res.statusCode, code: res.statusCode >= 400 ? outcomeCode(res.body) : undefined };
    };
    const before = up.requests.length;
    t.equal((await get(`Patient/${patientId}`, `Bearer ${wide}`)).status, 200, 'wide token reads Patient');
    t.same(
      await get(`Patient/${patientId}`, `Bearer ${narrow}`),
      { status: 403, code: 'INSUFFICIENT_SCOPE' },
      'next request, narrow token: refused',
    );
    t.same(await get(`Patient/${patientId}`, undefined), { status: 401, code: 'TOKEN_MISSING' }, 'next request, no token: refused');
    t.same(
      await get(`Patient/${patientId}`, `Bearer ${wide}x`),
      { status: 401, code: 'INVALID_TOKEN' },
      'next request, the wide token altered: refused',
    );
    t.same(
      await get(`Patient/${patientId}`, `bearer ${wide}`),
      { status: 200, code: undefined },
      'the wide token under another spelling of the scheme: accepted',
    );
    t.equal((await get(`Observation/${obsId}`, `Bearer ${narrow}`)).status, 200, 'narrow token reads Observation');
    t.equal((await get(`Patient/${patientId}`, `Bearer ${wide}`)).status, 200, 'wide token again');
    t.equal(up.requests.length, before + 4, 'only the four accepted requests reached the upstream');
    t.notOk(conn.closed, 'all on one connection');
  },
);
