import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import t, { type Test } from 'tap';
import type { GatewayConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors/catalogue.js';
import { bearerToken, TokenVerifier, type VerifiedToken } from '../../src/security/jwt.js';
import { AUDIENCE, ISSUER, makeKey, mintToken, startJwksServer, type TestKey } from '../helpers/auth.js';

type Auth = GatewayConfig['auth'];

/** The auth section as the schema's defaults would fill it, with test-friendly overrides. */
function authConfig(over: Partial<Auth> = {}): Auth {
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

/** A clock the test moves by hand; starts at the real time because tokens are minted against it. */
function manualClock() {
  const c = { ms: Date.now(), now: () => c.ms };
  return c;
}

function jwksFileWith(t: Test, keys: TestKey[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-jwt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
  return file;
}

/** Asserts `p` rejects with INVALID_TOKEN and a matching description in both message and challenge. */
async function refused(t: Test, p: Promise<unknown>, description: RegExp, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: was accepted`);
  } catch (err) {
    t.ok(err instanceof GatewayError, `${msg}: a GatewayError`);
    const e = err as GatewayError;
    t.equal(e.code, 'INVALID_TOKEN', `${msg}: INVALID_TOKEN`);
    t.equal(e.status, 401);
    t.match(e.message, description, `${msg}: message`);
    t.match(e.headers['www-authenticate'], /^Bearer error="invalid_token", error_description="/, `${msg}: challenge`);
    t.match(e.headers['www-authenticate'], description, `${msg}: challenge describes it`);
  }
}

t.test('bearerToken: the scheme is case-insensitive and the token68 is returned as is', async (t) => {
  t.equal(bearerToken(undefined), undefined, 'no header: no token');
  for (const h of ['Bearer abc.def.ghi', 'bearer abc.def.ghi', 'BEARER abc.def.ghi', 'BeArEr abc.def.ghi', 'Bearer   abc.def.ghi']) {
    t.equal(bearerToken(h), 'abc.def.ghi', JSON.stringify(h));
  }
  t.equal(bearerToken('Bearer a-b_c.d~e+f/g=='), 'a-b_c.d~e+f/g==', 'every token68 character and trailing padding');
});

t.test('bearerToken: anything that is not exactly one Bearer token68 is INVALID_TOKEN, never "no token"', async (t) => {
  for (const h of [
    '',
    'Bearer',
    'Bearer ',
    'Bearerabc',
    'Bearer\tabc',
    'Bearer a b',
    'Bearer abc, Bearer def',
    'Bearer abc,def',
    'Bearer "abc"',
    'Bearer ab=c',
    'Bearer =abc',
    'Bearer abc;',
    'Bearer abc\u00e9',
    'Basic dXNlcjpwYXNz',
    'Token abc',
    'DPoP abc',
    ' Bearer abc',
  ]) {
    try {
      bearerToken(h);
      t.fail(`${JSON.stringify(h)} was accepted`);
    } catch (err) {
      t.ok(err instanceof GatewayError && err.code === 'INVALID_TOKEN', `${JSON.stringify(h)} → INVALID_TOKEN`);
      t.match((err as GatewayError).headers['www-authenticate'], /^Bearer error="invalid_token"/);
    }
  }
});

t.test('cache hit returns the verified token without re-verifying (no JWKS fetch, same object)', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url }), clock.now);
  const token = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });

  const first = await v.verify(token);
  t.equal(jwks.fetches, 1, 'the first verification fetched the JWKS');
  t.equal(first.kid, 'k1');
  t.equal(first.claims['scope'], 'user/Patient.rs');
  t.equal(first.expiresAt, (decodeJwt(token).exp as number) * 1000);
  t.equal(v.cacheSize, 1);

  // Make any re-verification fail: the JWKS no longer has the key and jose would refetch on a miss.
  jwks.keys = [];
  clock.ms += 5_000;
  for (let i = 0; i < 5; i++) {
    const again = await v.verify(token);
    t.equal(again, first, `hit ${i + 1} returns the cached object`);
  }
  t.equal(jwks.fetches, 1, 'no hit fetched the JWKS');
});

t.test('a cached token past exp is refused even while cached', async (t) => {
  const key = await makeKey('k1');
  const clock = manualClock();
  const v = new TokenVerifier(
    authConfig({ jwksFile: jwksFileWith(t, [key]), clockToleranceSeconds: 30, tokenCache: { maxEntries: 10, maxAgeSeconds: 3_600 } }),
    clock.now,
  );
  const token = await mintToken(key, { expiresIn: 60 });
  const exp = (decodeJwt(token).exp as number) * 1000;

  const first = await v.verify(token);
  clock.ms = exp + 30_000 - 1;
  t.equal(await v.verify(token), first, 'inside exp + tolerance: still the cached entry');
  clock.ms = exp + 30_000;
  await refused(t, v.verify(token), /token expired/, 'at exp + tolerance');
  t.equal(v.cacheSize, 0, 'the expired entry was dropped');
  clock.ms = exp + 3_600_000;
  await refused(t, v.verify(token), /token expired/, 'long after');
});

t.test('a cached token is refused once the clock is before nbf - tolerance (nbf honoured on hits and misses)', async (t) => {
  const key = await makeKey('k1');
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksFile: jwksFileWith(t, [key]), clockToleranceSeconds: 30 }), clock.now);
  const token = await mintToken(key, { notBefore: 120, expiresIn: 600 });
  const nbf = (decodeJwt(token).nbf as number) * 1000;

  await refused(t, v.verify(token), /token not yet valid/, 'now, nbf 120 s ahead');
  clock.ms = nbf - 30_000 - 1;
  await refused(t, v.verify(token), /token not yet valid/, 'just outside tolerance');
  t.equal(v.cacheSize, 0, 'a refused token is not cached');

  clock.ms = nbf - 30_000;
  const ok = await v.verify(token);
  t.equal(ok.notBefore, nbf, 'accepted at nbf - tolerance; notBefore recorded');
  t.equal(v.cacheSize, 1);
  // The clock is stepped back (NTP correction): the cached entry must not outlive its nbf.
  clock.ms = nbf - 60_000;
  await refused(t, v.verify(token), /token not yet valid/, 'cached, clock stepped back');
});

t.test('the cache is bounded at maxEntries; the oldest entry is evicted', async (t) => {
  const key = await makeKey('k1');
  const clock = manualClock();
  const v = new TokenVerifier(
    authConfig({ jwksFile: jwksFileWith(t, [key]), tokenCache: { maxEntries: 3, maxAgeSeconds: 600 } }),
    clock.now,
  );
  const tokens = await Promise.all([0, 1, 2, 3].map((i) => mintToken(key, { claims: { n: i } })));
  const verified: VerifiedToken[] = [];
  for (const tok of tokens) {
    verified.push(await v.verify(tok));
    clock.ms += 1;
  }
  t.equal(v.cacheSize, 3, 'never more than maxEntries');
  // Tokens 1..3 are still cached (check before touching token 0, whose re-verification evicts one).
  for (const i of [1, 2, 3]) t.equal(await v.verify(tokens[i]), verified[i], `token ${i} still cached`);
  const again = await v.verify(tokens[0]);
  t.not(again, verified[0], 'token 0 was evicted and verified afresh');
  t.same(again.claims, verified[0].claims);
  t.equal(v.cacheSize, 3);
  t.not(await v.verify(tokens[1]), verified[1], 'inserting token 0 again evicted token 1, now the oldest');
});

t.test('cache entries expire after maxAgeSeconds; maxEntries 0 or maxAgeSeconds 0 disable the cache', async (t) => {
  const key = await makeKey('k1');
  const file = jwksFileWith(t, [key]);
  const token = await mintToken(key, { expiresIn: 3_600 });

  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksFile: file, tokenCache: { maxEntries: 10, maxAgeSeconds: 10 } }), clock.now);
  const first = await v.verify(token);
  clock.ms += 9_999;
  t.equal(await v.verify(token), first, 'inside maxAge: cached');
  clock.ms += 1;
  const second = await v.verify(token);
  t.not(second, first, 'at maxAge: verified again');
  clock.ms += 9_999;
  t.equal(await v.verify(token), second, 'the fresh entry has its own maxAge');

  for (const tokenCache of [
    { maxEntries: 0, maxAgeSeconds: 60 },
    { maxEntries: 10, maxAgeSeconds: 0 },
  ]) {
    const off = new TokenVerifier(authConfig({ jwksFile: file, tokenCache }), clock.now);
    const a = await off.verify(token);
    const b = await off.verify(token);
    t.not(a, b, `${JSON.stringify(tokenCache)}: every call verifies`);
    t.equal(off.cacheSize, 0);
  }
});

t.test('a key removed from the JWKS invalidates cached tokens signed by it once jose refreshes its set', async (t) => {
  const k1 = await makeKey('k1');
  const k2 = await makeKey('k2');
  const jwks = await startJwksServer(t, [k1, k2]);
  const clock = manualClock();
  // jose's own freshness runs on the real clock: a 50 ms set lifetime makes it refetch on the next miss.
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url, jwksCacheMaxAgeMs: 50 }), clock.now);
  const a = await mintToken(k1, { claims: { who: 'a' } });
  const b = await mintToken(k2, { claims: { who: 'b' } });
  await v.verify(a);
  await v.verify(b);
  t.equal(v.cacheSize, 2);

  jwks.keys = [k2.publicJwk];
  // Kept as a sleep, on purpose: jose judges its set's age on the real clock (no hook to poll or
  // to advance), so the scenario is simply to be past the 50 ms lifetime.
  await sleep(80);
  clock.ms += 2_000;
  // Another token (a miss) makes jose refetch; the cache then drops what k1 signed.
  await v.verify(await mintToken(k2, { claims: { who: 'c' } }));
  t.ok(jwks.fetches >= 2, 'jose refetched the set');
  await refused(t, v.verify(a), /no matching signing key/, 'token signed by the removed key');
  t.equal((await v.verify(b)).claims['who'], 'b', 'tokens of the remaining key are unaffected');
});

t.test('a refresh caused by a refused token (unknown kid) still drops cached tokens of the removed key', async (t) => {
  const k1 = await makeKey('k1');
  const k2 = await makeKey('k2');
  const rogue = await makeKey('k3');
  const jwks = await startJwksServer(t, [k1, k2]);
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url, jwksCooldownMs: 0 }), clock.now);
  const a = await mintToken(k1);
  await v.verify(a);
  const fetched = jwks.fetches;

  jwks.keys = [k2.publicJwk]; // k1 compromised and withdrawn
  clock.ms += 2_000;
  await refused(t, v.verify(await mintToken(rogue)), /no matching signing key/, 'unknown kid');
  t.equal(jwks.fetches, fetched + 1, 'the unknown kid made jose refetch: its set no longer has k1');
  await refused(t, v.verify(a), /no matching signing key/, 'cached token signed by the withdrawn key');
  t.equal(v.cacheSize, 0);
});

t.test('cached tokens of a rotated-out key are dropped even when every later request is a cache hit', async (t) => {
  const k1 = await makeKey('k1');
  const k2 = await makeKey('k2');
  const jwks = await startJwksServer(t, [k1]);
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksUri: jwks.url, jwksCooldownMs: 0 }), clock.now);
  const a = await mintToken(k1);
  await v.verify(a);

  // Rotation within the key-check interval: k2 arrives, k1 leaves; jose learns it from k2's token.
  jwks.keys = [k2.publicJwk];
  clock.ms += 200;
  const b = await mintToken(k2);
  t.equal((await v.verify(b)).kid, 'k2', 'the new key is fetched on its first unknown kid');
  // From here on only cache hits: a must still go once the check interval has passed.
  clock.ms += 1_500;
  t.equal((await v.verify(b)).kid, 'k2', 'b still cached');
  await refused(t, v.verify(a), /no matching signing key/, 'a, signed by the rotated-out key');
});

t.test('a token issued further in the future than the clock tolerance is refused (jose checks iat only with maxTokenAge)', async (t) => {
  const key = await makeKey('k1');
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksFile: jwksFileWith(t, [key]), clockToleranceSeconds: 30 }), clock.now);
  const yearAhead = await mintToken(key, { issuedAt: 365 * 86_400, expiresIn: 400 * 86_400 });
  await refused(t, v.verify(yearAhead), /token issued in the future/, 'iat a year ahead');
  t.equal(v.cacheSize, 0, 'a refused token is not cached');

  const ahead = await mintToken(key, { issuedAt: 120, expiresIn: 600 });
  const iat = (decodeJwt(ahead).iat as number) * 1000;
  clock.ms = iat - 30_000 - 1;
  await refused(t, v.verify(ahead), /token issued in the future/, 'one millisecond past the tolerance');
  clock.ms = iat - 30_000;
  t.equal((await v.verify(ahead)).claims.iat, iat / 1000, 'at exactly the tolerance: accepted');
  t.ok(await v.verify(await mintToken(key, { issuedAt: 20 })), 'iat 20 s ahead, inside the 30 s tolerance');
  t.ok(await v.verify(await mintToken(key, { issuedAt: -3_600 })), 'iat an hour ago');
});

t.test('no key source: every token is refused', async (t) => {
  const key = await makeKey('k1');
  const v = new TokenVerifier(authConfig({}));
  await refused(t, v.verify(await mintToken(key)), /no matching signing key/, 'no jwksUri/jwksFile');
});

t.test('verification failures map to descriptions that never echo the token', async (t) => {
  const key = await makeKey('k1');
  const other = await makeKey('k1'); // same kid, different key: a forged signature
  const clock = manualClock();
  const v = new TokenVerifier(authConfig({ jwksFile: jwksFileWith(t, [key]) }), clock.now);
  await refused(t, v.verify(await mintToken(other)), /signature verification failed/, 'forged signature');
  await refused(t, v.verify(await mintToken(key, { expiresIn: undefined })), /claim 'exp' is invalid or missing/, 'no exp');
  await refused(t, v.verify(await mintToken(key, { issuer: 'https://evil.test' })), /claim 'iss' is invalid or missing/, 'wrong iss');
  await refused(t, v.verify(await mintToken(key, { audience: 'someone-else' })), /claim 'aud' is invalid or missing/, 'wrong aud');
  await refused(t, v.verify('not.a.jwt'), /malformed token/, 'garbage');
  const secret = 'eyJzZWNyZXQiOiJ0b2tlbiJ9';
  try {
    await v.verify(`${secret}.${secret}.${secret}`);
    t.fail('garbage with a JSON-looking header was accepted');
  } catch (err) {
    t.notMatch((err as GatewayError).message, secret, 'the token is not in the message');
    t.notMatch((err as GatewayError).headers['www-authenticate'], secret, 'nor in the challenge');
  }
});

t.test('auth.typ: only tokens whose typ header matches are accepted (an ID token is not an access token)', async (t) => {
  const key = await makeKey('k1');
  const v = new TokenVerifier(authConfig({ jwksFile: jwksFileWith(t, [key]), typ: 'at+jwt' }));
  const access = await mintToken(key, { header: { typ: 'at+jwt' } });
  t.equal((await v.verify(access)).claims.iss, ISSUER, 'at+jwt accepted');
  await refused(t, v.verify(await mintToken(key, { header: { typ: 'JWT' } })), /claim 'typ' is invalid or missing/, 'typ JWT');
  await refused(t, v.verify(await mintToken(key)), /claim 'typ' is invalid or missing/, 'no typ');
  const lax = new TokenVerifier(authConfig({ jwksFile: jwksFileWith(t, [key]) }));
  t.ok(await lax.verify(await mintToken(key, { header: { typ: 'JWT' } })), 'without auth.typ any typ passes');
});

t.test('an entry a connection holds (lookup, then revalidate) is good only while the cache would still answer with it', async (t) => {
  const k1 = await makeKey('k1');
  const k2 = await makeKey('k2');
  const jwks = await startJwksServer(t, [k1, k2]);
  const clock = manualClock();
  const v = new TokenVerifier(
    authConfig({ jwksUri: jwks.url, jwksCooldownMs: 0, tokenCache: { maxEntries: 2, maxAgeSeconds: 60 } }),
    clock.now,
  );
  const a = await mintToken(k1, { expiresIn: 600 });
  const verified = await v.verify(a);
  const held = v.lookup(a);
  t.equal(held?.token, verified, 'lookup gives the cached entry');
  t.ok(v.revalidate(held!), 'fresh: good');

  // Cache age: past maxAge the held entry goes, as a lookup would.
  clock.ms += 60_000;
  t.notOk(v.revalidate(held!), 'past maxAgeSeconds: not good');
  t.equal(v.lookup(a), undefined, 'and gone from the cache');

  // Capacity: evicting the entry from the cache makes the held copy worthless too.
  await v.verify(a);
  const again = v.lookup(a)!;
  await v.verify(await mintToken(k2, { claims: { n: 1 } }));
  await v.verify(await mintToken(k2, { claims: { n: 2 } }));
  t.notOk(v.revalidate(again), 'evicted at maxEntries: not good');

  // exp: a held entry is refused at exp + tolerance although its cache age is fine.
  const short = await mintToken(k2, { expiresIn: 60 });
  await v.verify(short);
  const heldShort = v.lookup(short)!;
  clock.ms = (decodeJwt(short).exp as number) * 1000 + 30_000;
  t.notOk(v.revalidate(heldShort), 'at exp + tolerance: not good');

  // Key withdrawn: once jose's set has lost k1, an entry signed by it is not good however it is held.
  const fresh = manualClock();
  const w = new TokenVerifier(authConfig({ jwksUri: jwks.url, jwksCooldownMs: 0 }), fresh.now);
  await w.verify(a);
  const heldA = w.lookup(a)!;
  jwks.keys = [k2.publicJwk];
  fresh.ms += 2_000;
  await refused(t, w.verify(await mintToken(await makeKey('k9'))), /no matching signing key/, 'unknown kid makes jose refetch');
  t.notOk(w.revalidate(heldA), 'signed by the withdrawn key: not good');

  // A verifier built by a reload does not honour entries of the one it replaced.
  const b = await mintToken(k2);
  await w.verify(b);
  const heldB = w.lookup(b)!;
  const replacement = new TokenVerifier(authConfig({ jwksUri: jwks.url }), fresh.now);
  t.notOk(replacement.revalidate(heldB), "another verifier's entry: not good");
  t.ok(w.revalidate(heldB), 'still good for its own verifier');
});
