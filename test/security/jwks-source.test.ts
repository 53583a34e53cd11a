// An identity provider outage is not a bad token (issue 12): TokenVerifier against a real JWKS
// server that is stopped, slow, or answers something other than a key set.
import t, { type Test } from 'tap';
import type { GatewayConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors/catalogue.js';
import { KEYS_RETRY_AFTER_SECONDS } from '../../src/security/jwks-source.js';
import { TokenVerifier } from '../../src/security/jwt.js';
import { AUDIENCE, ISSUER, makeKey, mintToken, startJwksServer, type JwksFailure } from '../helpers/auth.js';

type Auth = GatewayConfig['auth'];

function authConfig(over: Partial<Auth>): Auth {
  return {
    issuers: [ISSUER],
    audiences: [AUDIENCE],
    algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'],
    clockToleranceSeconds: 30,
    jwksCooldownMs: 0,
    jwksCacheMaxAgeMs: 600_000,
    jwksTimeoutMs: 5_000,
    patientClaim: 'patient',
    tokenCache: { maxEntries: 100, maxAgeSeconds: 60 },
    ...over,
  };
}

/** A logger that keeps what it was asked to warn about. */
function warnings() {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  return { lines, warn: (obj: Record<string, unknown>, msg: string) => void lines.push({ obj, msg }) };
}

/** The error `p` rejects with (fails the test when it resolves). */
async function rejection(t: Test, p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    t.ok(err instanceof GatewayError, 'a GatewayError');
    return err as GatewayError;
  }
  t.fail('was accepted');
  return new GatewayError('INTERNAL');
}

/** Asserts the outage answer: 503 AUTH_UNAVAILABLE with Retry-After, no challenge (the token was not judged). */
function unavailable(t: Test, e: GatewayError, msg: string): void {
  t.same([e.code, e.status, e.headers['retry-after'], e.headers['www-authenticate']], ['AUTH_UNAVAILABLE', 503, '5', undefined], msg);
}

t.test('every way of not getting the key set is AUTH_UNAVAILABLE, logged once each with its cause', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const token = await mintToken(key);
  const cases: [string, JwksFailure, string][] = [
    ['500', { status: 500, body: '{"error":"boom"}' }, 'HTTP 500'],
    ['302 (jose follows no redirect)', { status: 302, body: '' }, 'HTTP 302'],
    ['200 with HTML', { status: 200, body: '<html>maintenance</html>' }, 'the answer is not JSON'],
    ['200 with JSON that is no key set', { status: 200, body: '{"keys":"none"}' }, 'the answer is not a JWK Set'],
    ['200 with keys that are not objects', { status: 200, body: '{"keys":[1,null]}' }, 'the answer is not a JWK Set'],
  ];
  for (const [what, failure, cause] of cases) {
    jwks.failure = failure;
    const log = warnings();
    const v = new TokenVerifier(authConfig({ jwksUri: jwks.url }), Date.now, log);
    unavailable(t, await rejection(t, v.verify(token)), what);
    t.same(
      log.lines.map((l) => [l.obj['cause'], l.obj['jwksUri'], l.msg]),
      [[cause, jwks.url, 'the identity provider signing keys (JWKS) could not be fetched']],
      `${what}: one warning with the cause`,
    );
    t.notMatch(JSON.stringify(log.lines), token.split('.')[1], `${what}: nothing of the token logged`);
  }
});

t.test('a stopped JWKS server (connection refused) and a silent one (timeout) are outages too', async (t) => {
  const key = await makeKey('k1');
  const token = await mintToken(key);
  const stopped = await startJwksServer(t, [key]);
  await stopped.close();
  const log = warnings();
  unavailable(t, await rejection(t, new TokenVerifier(authConfig({ jwksUri: stopped.url }), Date.now, log).verify(token)), 'refused');
  t.same(
    log.lines.map((l) => l.obj['cause']),
    ['ECONNREFUSED'],
  );

  const silent = await startJwksServer(t, [key]);
  silent.failure = 'hang';
  const slow = warnings();
  const v = new TokenVerifier(authConfig({ jwksUri: silent.url, jwksTimeoutMs: 100 }), Date.now, slow);
  unavailable(t, await rejection(t, v.verify(token)), 'timeout');
  t.same(
    slow.lines.map((l) => l.obj['cause']),
    ['no answer within 100 ms'],
  );
});

t.test('a kid that is not in a key set the gateway did get is still a bad token (401)', async (t) => {
  const known = await makeKey('k1');
  const stranger = await makeKey('k-unknown');
  const jwks = await startJwksServer(t, [known]);
  const log = warnings();
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url }), Date.now, log);
  const e = await rejection(t, v.verify(await mintToken(stranger)));
  t.same([e.code, e.status, e.headers['retry-after']], ['INVALID_TOKEN', 401, undefined]);
  t.match(e.headers['www-authenticate'], /error="invalid_token", error_description="no matching signing key"/);
  t.same(log.lines, [], 'no outage was logged');
  // The rotation refetch an unknown kid causes is an outage when it fails: the token cannot be judged.
  jwks.failure = { status: 503, body: '' };
  unavailable(t, await rejection(t, v.verify(await mintToken(stranger))), 'unknown kid while the refetch fails');
  t.ok(await v.verify(await mintToken(known)), 'tokens of the keys already fetched still verify meanwhile');
});

t.test('after a failure the gateway waits (jwksCooldownMs, at most the Retry-After) before asking again', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const clock = { ms: Date.now() };
  const log = warnings();
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url, jwksCooldownMs: 60_000 }), () => clock.ms, log);
  const token = await mintToken(key);
  jwks.failure = { status: 500, body: '' };
  unavailable(t, await rejection(t, v.verify(token)), 'first failure');
  t.equal(jwks.fetches, 1);
  jwks.failure = undefined;
  clock.ms += KEYS_RETRY_AFTER_SECONDS * 1000 - 1;
  unavailable(t, await rejection(t, v.verify(token)), 'inside the pause: refused without asking');
  t.equal(jwks.fetches, 1, 'no fetch during the pause (the cooldown is longer, the pause stops at Retry-After)');
  t.equal(log.lines.length, 1, 'the same failure is not logged again');
  clock.ms += 1;
  t.equal((await v.verify(token)).kid, 'k1', 'after the pause the keys are fetched and the token verifies');
  t.equal(jwks.fetches, 2);
});
