// SMART discovery (issue 12): `GET [base]/.well-known/smart-configuration` reaches the upstream
// without a token, like the CapabilityStatement, because a client reads it before it has one. It
// is the capabilities interaction, so the rule that governs `metadata` governs it too.
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { outcome } from '../attack/helpers.js';

const PUBLIC_CAPABILITIES = { name: 'capabilities', match: { interactions: ['capabilities'] }, require: { auth: false, smart: false } };

t.test('the discovery document is passed through without a token; only GET and HEAD', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  // The shipped default policy's capabilities rule.
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { rules: [PUBLIC_CAPABILITIES] } });
  const url = `${gw.base}/.well-known/smart-configuration`;
  const expected = (await (await fetch(`${up.url}/.well-known/smart-configuration`)).json()) as Record<string, unknown>;
  t.ok(expected['token_endpoint'], 'sanity: the upstream publishes a SMART configuration');

  const before = up.requests.length;
  const res = await fetch(url);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^application\/json/);
  t.same(await res.json(), expected, 'the upstream document, as it is');
  const forwarded = up.requests.slice(before);
  t.same(
    forwarded.map((r) => [r.method, r.url, r.headers['authorization']]),
    [['GET', '/fhir/.well-known/smart-configuration', undefined]],
    'one GET reached the upstream, without Authorization',
  );

  const head = await fetch(url, { method: 'HEAD' });
  t.same([head.status, (await head.arrayBuffer()).byteLength], [200, 0], 'HEAD');

  const beforeRefusals = up.requests.length;
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
    const r = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: method === 'DELETE' ? undefined : '{}' });
    t.equal(r.headers.get('allow'), 'GET, HEAD', `${method}: Allow`);
    t.same(await outcome(r), [405, 'METHOD_NOT_ALLOWED'], method);
  }
  t.same(await outcome(fetch(`${gw.base}/.well-known/openid-configuration`)), [404, 'NOT_FOUND'], 'no other .well-known document');
  // A token that is sent is verified, even here (a bad token is an error, never ignored).
  t.same(await outcome(fetch(url, { headers: { authorization: 'Bearer not.a.token' } })), [401, 'INVALID_TOKEN'], 'bad token');
  t.equal(up.requests.length, beforeRefusals, 'no refused request reached the upstream');
  const withToken = await fetch(url, { headers: { authorization: `Bearer ${await mintToken(key)}` } });
  t.equal(withToken.status, 200, 'a good token changes nothing');
  await withToken.arrayBuffer();
});

t.test('it is governed by the capabilities rule: a policy that closes metadata closes it too', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  // No public capabilities rule: the baseline defaultRule (auth: true) applies to both documents.
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const before = up.requests.length;
  t.same(await outcome(fetch(`${gw.base}/metadata`)), [401, 'TOKEN_MISSING'], 'metadata');
  t.same(await outcome(fetch(`${gw.base}/.well-known/smart-configuration`)), [401, 'TOKEN_MISSING'], 'smart-configuration');
  t.equal(up.requests.length, before, 'nothing reached the upstream');
  const ok = await fetch(`${gw.base}/.well-known/smart-configuration`, { headers: { authorization: `Bearer ${await mintToken(key)}` } });
  t.equal(ok.status, 200, 'with a token (SMART scopes are not asked for discovery)');
  await ok.arrayBuffer();
});
