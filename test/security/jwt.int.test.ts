/**
 * JWT bypass classes, each attacked through the running gateway in front of a real FHIR server.
 * Every refusal also checks that nothing reached the upstream.
 */
import { createPublicKey, randomUUID, type JsonWebKey } from 'node:crypto';
import http from 'node:http';
import { SignJWT } from 'jose';
import t, { type Test } from 'tap';
import { AUDIENCE, ISSUER, makeKey, mintToken, startJwksServer, type TestKey, type TokenOptions } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';

const ALL = 'user/*.cruds';

function token(key: TestKey, opts: TokenOptions = {}): Promise<string> {
  return mintToken(key, { ...opts, claims: { scope: ALL, ...opts.claims } });
}

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function claimsNow(extra: Record<string, unknown> = {}) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 300, scope: ALL, ...extra };
}

interface Refusal {
  status: number;
  code: string;
  /** Exact value, or a pattern, of WWW-Authenticate. */
  challenge?: string | RegExp;
}

/** Asserts an OperationOutcome refusal and that the upstream saw no request while it was made. */
async function refused(t: Test, up: FhirUpstream, send: () => Promise<Response>, want: Refusal, msg: string): Promise<Response> {
  const before = up.requests.length;
  const res = await send();
  t.equal(res.status, want.status, `${msg}: status ${want.status}`);
  const body = (await res.json()) as { resourceType: string; issue: { details: { coding: { code: string }[] } }[] };
  t.equal(body.resourceType, 'OperationOutcome', `${msg}: OperationOutcome`);
  t.equal(body.issue[0]?.details.coding[0]?.code, want.code, `${msg}: code ${want.code}`);
  if (want.challenge !== undefined) {
    const h = res.headers.get('www-authenticate') ?? '';
    if (typeof want.challenge === 'string') t.equal(h, want.challenge, `${msg}: WWW-Authenticate`);
    else t.match(h, want.challenge, `${msg}: WWW-Authenticate`);
  }
  t.equal(up.requests.length, before, `${msg}: nothing reached the upstream`);
  return res;
}

const INVALID = (description: string | RegExp) =>
  typeof description === 'string'
    ? `Bearer error="invalid_token", error_description="${description}"`
    : new RegExp(`^Bearer error="invalid_token", error_description="${description.source}"$`);

async function seedPatient(up: FhirUpstream): Promise<string> {
  const res = await fetch(`${up.url}/Patient`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Seed' }] }),
  });
  const body = (await res.json()) as { id: string };
  return body.id;
}

// One upstream, JWKS and gateway serve the tests that need no special configuration.
const up = await startUpstream(t);
const k1 = await makeKey('k1');
const jwks = await startJwksServer(t, [k1]);
const gw = await startTestGateway(t, {
  upstream: up.url,
  jwksUri: jwks.url,
  config: {
    rules: [
      { name: 'public-metadata', match: { interactions: ['capabilities'] }, require: { auth: false, smart: false } },
      { name: 'forward-token', match: { resourceTypes: ['Organization'] }, forwardAuthorization: true },
    ],
  },
});
const patientId = await seedPatient(up);
const patientUrl = `${gw.base}/Patient/${patientId}`;
const get = (url: string, tok?: string, headers: Record<string, string> = {}) =>
  fetch(url, { headers: { ...(tok === undefined ? {} : { authorization: `Bearer ${tok}` }), ...headers } });

t.test('control: a valid token reads through the gateway', async (t) => {
  const res = await get(patientUrl, await token(k1));
  t.equal(res.status, 200);
  t.match(await res.json(), { resourceType: 'Patient', id: patientId });
});

t.test('alg "none" token (unsigned) is refused with invalid_token', async (t) => {
  const header = b64url({ alg: 'none', typ: 'JWT' });
  const payload = b64url(claimsNow());
  for (const [name, tok] of [
    ['empty signature', `${header}.${payload}.`],
    ['kid of a real key', `${b64url({ alg: 'none', kid: 'k1' })}.${payload}.`],
    ['alg "None"', `${b64url({ alg: 'None' })}.${payload}.`],
    ['alg "NONE"', `${b64url({ alg: 'NONE' })}.${payload}.`],
  ] as const) {
    await refused(
      t,
      up,
      () => get(patientUrl, tok),
      { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('signing algorithm not allowed') },
      name,
    );
  }
  // The signature part of a real token glued onto an alg:none header changes nothing.
  const real = (await token(k1)).split('.');
  await refused(
    t,
    up,
    () => get(patientUrl, `${header}.${real[1]}.${real[2]}`),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('signing algorithm not allowed') },
    'alg none with a real signature',
  );
});

t.test('HS256 token signed with the RSA public key (PEM, JWK, modulus) as HMAC secret is refused (alg confusion)', async (t) => {
  const pem = createPublicKey({ key: k1.publicJwk as JsonWebKey, format: 'jwk' }).export({
    type: 'spki',
    format: 'pem',
  }) as string;
  const secrets: [string, Uint8Array][] = [
    ['SPKI PEM', new TextEncoder().encode(pem)],
    ['SPKI PEM without trailing newline', new TextEncoder().encode(pem.trimEnd())],
    ['JWK JSON', new TextEncoder().encode(JSON.stringify(k1.publicJwk))],
    ['modulus bytes', Buffer.from(k1.publicJwk.n ?? '', 'base64url')],
  ];
  for (const alg of ['HS256', 'HS512']) {
    for (const [name, secret] of secrets) {
      const tok = await new SignJWT(claimsNow()).setProtectedHeader({ alg, kid: 'k1', typ: 'JWT' }).sign(secret);
      await refused(
        t,
        up,
        () => get(patientUrl, tok),
        { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('signing algorithm not allowed') },
        `${alg} / ${name}`,
      );
    }
  }
});

t.test('a token signed by another key under a known kid (forged signature) is refused', async (t) => {
  const forger = await makeKey('k1');
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(forger)),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('signature verification failed') },
    'forged',
  );
  // Payload swapped under a genuine header and signature.
  const [h, , s] = (await token(k1)).split('.');
  const tampered = `${h}.${b64url(claimsNow({ scope: 'system/*.cruds', sub: 'admin' }))}.${s}`;
  await refused(
    t,
    up,
    () => get(patientUrl, tampered),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('signature verification failed') },
    'tampered payload',
  );
});

t.test('aud as an array is accepted when it contains the audience, refused when it does not', async (t) => {
  const ok = await get(patientUrl, await token(k1, { audience: ['other-api', AUDIENCE] }));
  t.equal(ok.status, 200, 'array containing the audience');
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { audience: ['other-api', 'yet-another'] })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID("claim 'aud' is invalid or missing") },
    'array without it',
  );
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { audience: [] })),
    { status: 401, code: 'INVALID_TOKEN' },
    'empty array',
  );
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { audience: undefined })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID("claim 'aud' is invalid or missing") },
    'no aud',
  );
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { audience: `${AUDIENCE} ` })),
    { status: 401, code: 'INVALID_TOKEN' },
    'near-miss string',
  );
});

t.test('a token without exp (would never expire) is refused', async (t) => {
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { expiresIn: undefined })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID("claim 'exp' is invalid or missing") },
    'no exp',
  );
});

t.test('an expired token is refused and the challenge says it expired', async (t) => {
  const res = await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { expiresIn: -120 })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('token expired') },
    'expired 120 s ago',
  );
  t.match(res.headers.get('www-authenticate'), /error_description="[^"]*expired/);
  // Within clockToleranceSeconds (30 s by default) an expired token still passes.
  t.equal((await get(patientUrl, await token(k1, { expiresIn: -5 }))).status, 200, 'expired 5 s ago, inside tolerance');
});

t.test('a not-yet-valid token (nbf beyond the clock tolerance) is refused', async (t) => {
  await refused(
    t,
    up,
    async () => get(patientUrl, await token(k1, { notBefore: 300 })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('token not yet valid') },
    'nbf +300 s',
  );
  t.equal((await get(patientUrl, await token(k1, { notBefore: 5 }))).status, 200, 'nbf +5 s is inside tolerance');
});

t.test('a token from the wrong issuer is refused', async (t) => {
  for (const issuer of ['https://evil.test', `${ISSUER}/`, ISSUER.toUpperCase(), undefined]) {
    await refused(
      t,
      up,
      async () => get(patientUrl, await token(k1, { issuer })),
      { status: 401, code: 'INVALID_TOKEN', challenge: INVALID("claim 'iss' is invalid or missing") },
      `iss ${String(issuer)}`,
    );
  }
});

t.test('a token in the access_token query parameter is refused with 400 and never accepted', async (t) => {
  const tok = await token(k1);
  await refused(t, up, () => get(`${patientUrl}?access_token=${tok}`), { status: 400, code: 'BAD_REQUEST' }, 'query only');
  await refused(
    t,
    up,
    () => get(`${gw.base}/Patient?name=Seed&access_token=${tok}`),
    { status: 400, code: 'BAD_REQUEST' },
    'after another parameter',
  );
  await refused(
    t,
    up,
    () => get(`${patientUrl}?access_token=${tok}`, tok),
    { status: 400, code: 'BAD_REQUEST' },
    'alongside a valid Authorization header',
  );
  await refused(
    t,
    up,
    () => get(`${gw.base}/metadata?access_token=${tok}`),
    { status: 400, code: 'BAD_REQUEST' },
    'even where no token is needed',
  );
  // Encoded or case-folded names are the same parameter to whichever framework decodes them.
  await refused(
    t,
    up,
    () => get(`${patientUrl}?access%5Ftoken=${tok}`, tok),
    { status: 400, code: 'BAD_REQUEST' },
    'percent-encoded name with a valid header',
  );
  await refused(
    t,
    up,
    () => get(`${patientUrl}?ACCESS_TOKEN=${tok}`, tok),
    { status: 400, code: 'BAD_REQUEST' },
    'upper-case name with a valid header',
  );
  await refused(t, up, () => get(`${patientUrl}?a=1;access_token=${tok}`, tok), { status: 400, code: 'BAD_REQUEST' }, "';'-separated");
});

t.test('a missing token is 401 with a realm challenge and no error= (RFC 6750 §3.1)', async (t) => {
  const res = await refused(
    t,
    up,
    () => get(patientUrl),
    { status: 401, code: 'TOKEN_MISSING', challenge: 'Bearer realm="fhir-binary-gateway"' },
    'no Authorization',
  );
  t.notMatch(res.headers.get('www-authenticate'), /error=/);
});

t.test('an Authorization header that is not one Bearer token is invalid_token, not "missing"', async (t) => {
  const tok = await token(k1);
  for (const h of ['Basic dXNlcjpwYXNz', 'Bearer', `Bearer ${tok} extra`, `Token ${tok}`, `Bearer "${tok}"`]) {
    await refused(
      t,
      up,
      () => fetch(patientUrl, { headers: { authorization: h } }),
      { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('malformed Authorization header') },
      JSON.stringify(h.slice(0, 20)),
    );
  }
  t.equal((await fetch(patientUrl, { headers: { authorization: `bearer ${tok}` } })).status, 200, 'the scheme is case-insensitive');
});

t.test('two Authorization headers (auth confusion: Node keeps one, the upstream may keep the other) are refused', async (t) => {
  const good = await token(k1);
  const send = () =>
    new Promise<Response>((resolve, reject) => {
      // fetch folds repeated headers into one; node:http sends a raw header list as given (Host included).
      const req = http.request(
        patientUrl,
        {
          headers: ['Host', new URL(patientUrl).host, 'Authorization', `Bearer ${good}`, 'Authorization', 'Bearer attacker'],
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
            resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 0, headers }));
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  await refused(t, up, send, { status: 400, code: 'DUPLICATE_HEADER' }, 'valid + attacker token');
});

t.test('a bad token is refused even where the rule lets anonymous callers in', async (t) => {
  t.equal((await get(`${gw.base}/metadata`)).status, 200, 'anonymous capabilities read');
  await refused(
    t,
    up,
    async () => get(`${gw.base}/metadata`, await token(k1, { expiresIn: -120 })),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('token expired') },
    'expired token on a public path',
  );
});

t.test('the token is not forwarded to the upstream by default, and is when the rule says forwardAuthorization', async (t) => {
  const tok = await token(k1);
  const n = up.requests.length;
  t.equal((await get(patientUrl, tok)).status, 200);
  const seen = up.requests.slice(n);
  t.equal(seen.length, 1, 'one request upstream');
  t.equal(seen[0]?.headers['authorization'], undefined, 'Authorization stripped by default');

  const org = await fetch(`${up.url}/Organization`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Organization', name: 'Acme' }),
  });
  const orgId = ((await org.json()) as { id: string }).id;
  const m = up.requests.length;
  t.equal((await get(`${gw.base}/Organization/${orgId}`, tok)).status, 200);
  t.equal(up.requests[m]?.headers['authorization'], `Bearer ${tok}`, 'forwarded under forwardAuthorization: true');
});

t.test('an unknown kid makes the gateway refetch the JWKS and accept the rotated-in key', async (t) => {
  const up = await startUpstream(t);
  const id = await seedPatient(up);
  const a = await makeKey('rot-a');
  const b = await makeKey('rot-b');
  const jwks = await startJwksServer(t, [a]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url }); // jwksCooldownMs: 0
  const url = `${gw.base}/Patient/${id}`;

  t.equal((await get(url, await token(a))).status, 200, 'key a works');
  const afterFirst = jwks.fetches;
  t.equal(afterFirst, 1, 'one fetch so far');

  const tokB = await token(b);
  await refused(
    t,
    up,
    () => get(url, tokB),
    { status: 401, code: 'INVALID_TOKEN', challenge: INVALID('no matching signing key') },
    'kid b before it is published',
  );
  t.equal(jwks.fetches, afterFirst + 1, 'the unknown kid triggered a refetch');

  jwks.keys = [a.publicJwk, b.publicJwk];
  t.equal((await get(url, tokB)).status, 200, 'kid b accepted once published');
  t.equal(jwks.fetches, afterFirst + 2, 'found by refetching');
  t.equal((await get(url, await token(b))).status, 200);
  t.equal(jwks.fetches, afterFirst + 2, 'known now: no further fetch');
});

t.test('with a JWKS cooldown a burst of unknown kids does not hammer the JWKS server', async (t) => {
  const up = await startUpstream(t);
  const id = await seedPatient(up);
  const a = await makeKey('cool-a');
  const jwks = await startJwksServer(t, [a]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { auth: { jwksCooldownMs: 60_000 } } });
  const url = `${gw.base}/Patient/${id}`;

  t.equal((await get(url, await token(a))).status, 200);
  t.equal(jwks.fetches, 1);
  const attacker = await makeKey('x');
  const toks = await Promise.all(
    Array.from({ length: 25 }, () => mintToken({ ...attacker, kid: randomUUID() }, { claims: { scope: ALL } })),
  );
  const before = up.requests.length;
  const results = await Promise.all(toks.map((tok) => get(url, tok)));
  for (const r of results) {
    t.equal(r.status, 401);
    t.equal(r.headers.get('www-authenticate'), INVALID('no matching signing key'));
    await r.body?.cancel();
  }
  t.equal(jwks.fetches, 1, '25 unknown kids inside the cooldown: no refetch');
  t.equal(up.requests.length, before, 'none reached the upstream');
  t.equal((await get(url, await token(a))).status, 200, 'the known key still works');
});
