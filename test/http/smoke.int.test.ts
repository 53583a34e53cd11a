import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';

t.test('a FHIR read goes through the gateway with a valid token and is refused without one', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Patient.cruds fhir.write' } });

  const created = await fetch(`${gw.base}/Patient`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Smoke' }] }),
  });
  t.equal(created.status, 201);
  const loc = created.headers.get('location') ?? '';
  t.match(loc, /^http:\/\/gateway\.test\/fhir\/Patient\/[^/]+\/_history\/1$/, 'Location rewritten to the public base');
  const id = loc.split('/')[5];

  const read = await fetch(`${gw.base}/Patient/${id}`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(read.status, 200);
  t.match(await read.json(), { resourceType: 'Patient', id, name: [{ family: 'Smoke' }] });

  const anon = await fetch(`${gw.base}/Patient/${id}`);
  t.equal(anon.status, 401);
  t.equal(anon.headers.get('www-authenticate'), 'Bearer realm="fhir-binary-gateway"');
  t.match(await anon.json(), { resourceType: 'OperationOutcome', issue: [{ details: { coding: [{ code: 'TOKEN_MISSING' }] } }] });
});

t.test('capabilities on an auth:false rule need no token even though defaultRule has smart: true', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, {
    upstream: up.url,
    jwksUri: jwks.url,
    config: { rules: [{ name: 'open-metadata', match: { interactions: ['capabilities', 'search'] }, require: { auth: false } }] },
  });
  const meta = await fetch(`${gw.base}/metadata`);
  t.equal(meta.status, 200, 'metadata is public');
  t.match(await meta.json(), { resourceType: 'CapabilityStatement' });
  // The same rule does not make a search public: smart is inherited and a search needs a scope.
  const search = await fetch(`${gw.base}/Patient?name=x`);
  t.equal(search.status, 401);
  t.match(await search.json(), { issue: [{ details: { coding: [{ code: 'TOKEN_MISSING' }] } }] });
});
