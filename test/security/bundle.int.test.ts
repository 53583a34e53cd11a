import t from 'tap';
import type { Test } from 'tap';
import { request as httpRequest } from 'node:http';
import { makeKey, mintToken, startJwksServer, type TestKey } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { settled } from '../helpers/poll.js';
import { startUpstream } from '../helpers/upstream.js';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';

/**
 * Batch/transaction Bundles through the real gateway to a real FHIR server. The request as a
 * whole is let through by a `bundles` rule without SMART (a Bundle is never granted as a whole);
 * each entry is then checked against the rule for its own interaction (the defaultRule: SMART).
 */
const BUNDLE_RULE = {
  name: 'bundles',
  match: { interactions: ['batch', 'transaction'] },
  require: { smart: false },
  limits: { maxRequestBytes: 64 * 1024 },
};

interface Env {
  up: FhirUpstream;
  gw: TestGateway;
  key: TestKey;
}

async function setup(t: Test, config: Record<string, unknown> = { rules: [BUNDLE_RULE] }): Promise<Env> {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config });
  return { up, gw, key };
}

const token = (env: Env, scope: string) => mintToken(env.key, { claims: { scope } });

function post(env: Env, tok: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${env.gw.base}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json', ...headers },
    body,
  });
}

/** The spool file is removed once the exchange is over (on response close), possibly after the client has its answer. */
async function spoolEmpty(t: Test, gw: TestGateway, what: string): Promise<void> {
  t.same(await settled(() => gw.spoolFiles(), []), [], `spool dir empty ${what}`);
}

async function outcome(t: Test, r: Response, status: number, code: string): Promise<string> {
  t.equal(r.status, status, `HTTP ${status}`);
  t.match(r.headers.get('content-type'), /^application\/fhir\+json/);
  const oo = (await r.json()) as { resourceType: string; issue: { details: { coding: { code: string }[]; text: string } }[] };
  t.equal(oo.resourceType, 'OperationOutcome');
  t.equal(oo.issue[0]?.details.coding[0]?.code, code);
  return oo.issue[0]?.details.text ?? '';
}

const PATIENT_UUID = 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a';

const twoCreates = (type = 'transaction') =>
  JSON.stringify({
    resourceType: 'Bundle',
    type,
    entry: [
      {
        fullUrl: PATIENT_UUID,
        resource: { resourceType: 'Patient', name: [{ family: 'Bundled' }] },
        request: { method: 'POST', url: 'Patient' },
      },
      {
        resource: { resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: PATIENT_UUID } },
        request: { method: 'POST', url: 'Observation' },
      },
    ],
  });

t.test('a transaction with two creates succeeds with a token granting both types', async (t) => {
  const env = await setup(t);
  const body = twoCreates();
  const r = await post(env, await token(env, 'user/Patient.cruds user/Observation.cruds'), body);
  t.equal(r.status, 200);
  const resp = (await r.json()) as { resourceType: string; type: string; entry: { response: { status: string; location?: string } }[] };
  t.equal(resp.resourceType, 'Bundle');
  t.equal(resp.type, 'transaction-response');
  t.equal(resp.entry.length, 2);
  t.match(resp.entry[0].response.status, /^201/);
  t.match(resp.entry[1].response.status, /^201/);

  const posted = env.up.requests.filter((q) => q.method === 'POST');
  t.equal(posted.length, 1, 'the upstream got exactly one POST');
  t.match(posted[0].url, /^\/fhir\/?$/, 'to its base');
  t.equal(posted[0].bodyBytes, Buffer.byteLength(body), 'with the Bundle as sent');
  t.equal(posted[0].headers['content-length'], String(Buffer.byteLength(body)), 'with a length, not chunked');
  t.notOk(posted[0].headers['authorization'], 'the client token is not forwarded');

  // The transaction really happened upstream: the Observation references the new Patient.
  const pid = /Patient\/([^/]+)/.exec(resp.entry[0].response.location ?? '')?.[1];
  t.ok(pid, 'Patient location returned');
  const search = await fetch(`${env.gw.base}/Observation?subject=Patient/${pid}`, {
    headers: { authorization: `Bearer ${await token(env, 'user/Observation.rs')}` },
  });
  t.equal(search.status, 200);
  t.match(await search.json(), {
    resourceType: 'Bundle',
    entry: [{ resource: { resourceType: 'Observation', subject: { reference: `Patient/${pid}` } } }],
  });

  await spoolEmpty(t, env.gw, 'after success');
});

t.test('a batch of reads succeeds with read scopes', async (t) => {
  const env = await setup(t);
  const tok = await token(env, 'user/Patient.cruds');
  const created = await fetch(`${env.gw.base}/Patient`, {
    method: 'POST',
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Read' }] }),
  });
  t.equal(created.status, 201);
  const { id } = (await created.json()) as { id: string };
  const r = await post(
    env,
    await token(env, 'user/Patient.rs'),
    JSON.stringify({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [{ request: { method: 'GET', url: `Patient/${id}` } }, { request: { method: 'GET', url: 'Patient?family=Read' } }],
    }),
  );
  t.equal(r.status, 200);
  t.match(await r.json(), {
    resourceType: 'Bundle',
    type: 'batch-response',
    entry: [{ resource: { resourceType: 'Patient', id } }, { resource: { resourceType: 'Bundle', type: 'searchset' } }],
  });
  await spoolEmpty(t, env.gw, 'after a batch');
});

t.test('an entry the token does not grant refuses the whole Bundle; the upstream receives nothing', async (t) => {
  const env = await setup(t);
  const r = await post(env, await token(env, 'user/Patient.cruds'), twoCreates());
  const text = await outcome(t, r, 403, 'INSUFFICIENT_SCOPE');
  t.match(text, /Bundle entry 1\b/, 'names the entry index');
  t.match(text, /user\/Observation\.c/, 'names what it needs');
  t.match(r.headers.get('www-authenticate'), /^Bearer error="insufficient_scope"/);
  t.same(env.up.requests, [], 'nothing reached the upstream');
  await spoolEmpty(t, env.gw, 'after a scope refusal');

  // Same for a batch: no partial execution of the granted entries.
  const b = await post(env, await token(env, 'user/Patient.cruds'), twoCreates('batch'));
  t.match(await outcome(t, b, 403, 'INSUFFICIENT_SCOPE'), /Bundle entry 1\b/);
  t.same(env.up.requests, []);
  await spoolEmpty(t, env.gw, 'after a batch scope refusal');
});

t.test('malformed entries are refused with 400 and nothing reaches the upstream', async (t) => {
  const env = await setup(t);
  const tok = await token(env, 'user/*.cruds');
  const cases: [string, string, string, RegExp][] = [
    [
      'a GET entry with a dot segment',
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'batch',
        entry: [{ request: { method: 'GET', url: 'Patient/1' } }, { request: { method: 'GET', url: 'Patient/../Observation/1' } }],
      }),
      'AMBIGUOUS_PATH',
      /Bundle entry 1\b/,
    ],
    [
      'a duplicate method key in an entry request',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1","method":"DELETE"}}]}',
      'BAD_BUNDLE',
      /duplicate member "method"/,
    ],
    [
      'an entry resource type that differs from the entry url',
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Patient' } },
        ],
      }),
      'BAD_BUNDLE',
      /Bundle entry 0: resource is Observation but request\.url names Patient/,
    ],
    [
      'an update whose resource type differs from the url',
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ resource: { resourceType: 'Observation', id: '1' }, request: { method: 'PUT', url: 'Patient/1' } }],
      }),
      'BAD_BUNDLE',
      /resource is Observation but request\.url names Patient/,
    ],
    [
      'entry as an object',
      '{"resourceType":"Bundle","type":"batch","entry":{"request":{"method":"DELETE","url":"Patient/1"}}}',
      'BAD_BUNDLE',
      /entry must be an array/,
    ],
    [
      'an absolute entry url',
      JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'http://evil.test/Patient/1' } }] }),
      'BAD_BUNDLE',
      /Bundle entry 0/,
    ],
    [
      'a nested batch',
      JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'POST', url: '?x=1' } }] }),
      'BAD_BUNDLE',
      /Bundle entry 0: an entry cannot itself be a batch/,
    ],
    [
      'an empty entry url',
      JSON.stringify({ resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'POST', url: '' } }] }),
      'BAD_BUNDLE',
      /entry 0 has no request/,
    ],
    ['not a Bundle', JSON.stringify({ resourceType: 'Patient' }), 'BAD_BUNDLE', /resourceType must be Bundle/],
    ['a searchset', JSON.stringify({ resourceType: 'Bundle', type: 'searchset', entry: [] }), 'BAD_BUNDLE', /batch or transaction/],
    ['not JSON', '{"resourceType":"Bundle",', 'BAD_BUNDLE', /not valid JSON/],
  ];
  for (const [name, body, code, text] of cases) {
    t.test(name, async (t) => {
      const r = await post(env, tok, body);
      t.match(await outcome(t, r, 400, code), text);
      t.same(env.up.requests, [], 'nothing reached the upstream');
      await spoolEmpty(t, env.gw, 'after the refusal');
    });
  }
});

t.test('a Bundle that is not JSON is 415 before anything is spooled', async (t) => {
  const env = await setup(t);
  const tok = await token(env, 'user/*.cruds');
  const xml = '<Bundle xmlns="http://hl7.org/fhir"><type value="batch"/></Bundle>';
  for (const ct of ['application/fhir+xml', 'application/xml', 'text/plain', 'application/x-www-form-urlencoded']) {
    const r = await post(env, tok, xml, { 'content-type': ct });
    await outcome(t, r, 415, 'UNSUPPORTED_MEDIA');
  }
  t.same(env.up.requests, [], 'nothing reached the upstream');
  await spoolEmpty(t, env.gw, 'after 415');
});

t.test('a Bundle larger than the rule limit is 413, also when chunked', async (t) => {
  const env = await setup(t);
  const tok = await token(env, 'user/*.cruds');
  const big = JSON.stringify({ resourceType: 'Bundle', type: 'batch', id: 'x'.repeat(70 * 1024), entry: [] });
  await outcome(t, await post(env, tok, big), 413, 'PAYLOAD_TOO_LARGE');

  // Without Content-Length the body is counted while spooling.
  const status = await new Promise<number>((resolve, reject) => {
    const u = new URL(env.gw.base);
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/fhir+json', 'transfer-encoding': 'chunked' },
      },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    for (let i = 0; i < big.length; i += 8192) req.write(big.slice(i, i + 8192));
    req.end();
  });
  t.equal(status, 413);
  t.same(env.up.requests, [], 'nothing reached the upstream');
  await spoolEmpty(t, env.gw, 'after 413');
});

t.test('with only the shipped defaultRule (SMART), a Bundle is authorized by its entries', async (t) => {
  const env = await setup(t, {});
  const r = await post(env, await token(env, 'user/Patient.cruds user/Observation.cruds'), twoCreates());
  t.equal(r.status, 200, 'a transaction whose entries are all granted goes through');
  await r.body?.cancel();
  // An entry that is not granted is refused.
  const refused = await post(env, await token(env, 'user/Patient.cruds'), twoCreates());
  t.equal(refused.status, 403);
  t.same(
    env.up.requests.filter((q) => q.method === 'POST' && q.url.startsWith('/fhir/Observation')),
    [],
  );
  await refused.body?.cancel();
  await spoolEmpty(t, env.gw, 'after either');
});

t.test("a rule naming only 'transaction' applies to transactions", async (t) => {
  const env = await setup(t, { rules: [{ ...BUNDLE_RULE, match: { interactions: ['transaction'] } }] });
  const r = await post(env, await token(env, 'user/Patient.cruds user/Observation.cruds'), twoCreates());
  t.equal(r.status, 200, 'the transaction rule applies once the body says it is a transaction');
  await r.body?.cancel();
});

t.test("a rule naming only 'transaction' is enforced on transactions, not on batches", async (t) => {
  // Transactions only from 10.0.0.0/8: a transaction from loopback is refused, a batch is not.
  const env = await setup(t, {
    rules: [{ ...BUNDLE_RULE, name: 'tx-internal', match: { interactions: ['transaction'] }, require: { ipAllow: ['10.0.0.0/8'] } }],
  });
  const tok = await token(env, 'user/Patient.cruds user/Observation.cruds');
  const tx = await post(env, tok, twoCreates());
  t.equal(tx.status, 403);
  t.match(await tx.json(), { issue: [{ details: { coding: [{ code: 'FORBIDDEN' }] } }] });
  const batch = await post(env, tok, twoCreates().replace('"transaction"', '"batch"'));
  t.equal(batch.status, 200, 'a batch is not a transaction');
  await batch.body?.cancel();
  await spoolEmpty(t, env.gw, 'after both');
});

t.test('a conditional create entry (request.ifNoneExist) needs the search permission a conditional create needs', async (t) => {
  const env = await setup(t, {});
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        resource: { resourceType: 'Patient', name: [{ family: 'Cond' }] },
        request: { method: 'POST', url: 'Patient', ifNoneExist: 'identifier=urn:x|1' },
      },
    ],
  };
  const createOnly = await post(env, await token(env, 'user/Patient.c'), JSON.stringify(bundle));
  t.equal(createOnly.status, 403, 'create alone does not cover a conditional create (it runs a search)');
  t.match(await createOnly.json(), { issue: [{ details: { coding: [{ code: 'INSUFFICIENT_SCOPE' }], text: /Bundle entry 0/ } }] });
  t.same(
    env.up.requests.filter((q) => q.method === 'POST'),
    [],
    'nothing reached the upstream',
  );
  const withSearch = await post(env, await token(env, 'user/Patient.cs'), JSON.stringify(bundle));
  t.equal(withSearch.status, 200);
  await withSearch.body?.cancel();
});
