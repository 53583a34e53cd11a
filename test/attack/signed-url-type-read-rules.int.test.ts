// FINDING (signed URLs review): following a signed URL checks only the rule that matches the
// `$binary-access-read` operation, not the rules that govern reading the type. A type's read rules
// (`{ resourceTypes: [Binary], interactions: [read, vread, search, history] }`) hold for
// `$binary-access-read` with a token (security/reach.ts ownReadRules, attack own-type-reads), but a
// signed URL issued from inside their network is followed from anywhere, and one issued where they
// require HTTPS carries `spr=https,http` and is served over plain HTTP.
// docs/signed-urls.md step 7: "the address and transport conditions of the policy rule … hold too —
// a URL never widens them".
// Cause: src/http/flow.ts `signedFile` runs requireTransport/requireAddress for
// `ruleFor(contentReadOf(...))` only (no readRulesOf(type)); src/binary/file-urls.ts `issue` sets
// httpAllowed from that one rule's `require.https`.
import t, { type Test } from 'tap';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome } from './helpers.js';

const LAN = ['10.20.0.0/16'];
const INSIDE = { 'x-forwarded-for': '10.20.1.1' };
const OUTSIDE = { 'x-forwarded-for': '203.0.113.9' };

async function gateway(t: Test, require: Record<string, unknown>, type = 'Binary'): Promise<Stack> {
  return stack(t, {
    // The test client (127.0.0.1) plays the load balancer: its X-Forwarded-For/-Proto are believed.
    server: { trustedProxies: ['127.0.0.1/32'] },
    rules: [
      {
        name: 'type-reads',
        match: { resourceTypes: [type], interactions: ['read', 'vread', 'search', 'history'] },
        require,
      },
    ],
    signedUrls: signedUrlsConfig(urlKeys(t), {
      policies: [{ id: 'uploads', permissions: 'rw', maxWindow: '30m' }],
      defaultPolicy: 'uploads',
    }),
  });
}

async function binary(s: Stack, headers: Record<string, string>): Promise<string> {
  const c = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, ...headers, 'content-type': 'application/pdf' },
    body: PDF(70_000),
  });
  await c.arrayBuffer();
  if (c.status !== 201) throw new Error(`upload: ${c.status}`);
  return (c.headers.get('location') ?? '').split('/')[5];
}

async function fileUrl(s: Stack, id: string, headers: Record<string, string>): Promise<string> {
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url`, { headers: { ...s.auth, ...headers } });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`$file-url: ${r.status} ${text}`);
  const p = JSON.parse(text) as { parameter: { name: string; valueUrl?: string }[] };
  return p.parameter.find((x) => x.name === 'url')!.valueUrl!.replace('http://gateway.test', s.gw.url);
}

t.test("the type's read rules' client addresses hold for a followed URL", async (t) => {
  const s = await gateway(t, { ipAllow: LAN });
  const id = await binary(s, INSIDE);
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${id}/$binary-access-read`, { headers: { ...s.auth, ...OUTSIDE } })),
    [403, 'FORBIDDEN'],
    'control: from outside the LAN, the content read with a token is refused',
  );
  const url = await fileUrl(s, id, INSIDE);
  t.same(
    await outcome(fetch(url, { headers: OUTSIDE })),
    [403, 'FORBIDDEN'],
    'the URL, followed from outside the LAN, must be refused too',
  );
});

t.test("the type's read rules' HTTPS requirement holds for a followed URL", async (t) => {
  const s = await gateway(t, { https: true });
  const HTTPS = { 'x-forwarded-proto': 'https' };
  const HTTP = { 'x-forwarded-proto': 'http' };
  const id = await binary(s, HTTPS);
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${id}/$binary-access-read`, { headers: { ...s.auth, ...HTTP } })),
    [403, 'INSECURE_TRANSPORT'],
    'control: over plain HTTP, the content read with a token is refused',
  );
  const url = await fileUrl(s, id, HTTPS);
  t.match(url, /spr=https&/, 'issued for https only, since reading Binary requires it');
  t.same(await outcome(fetch(url, { headers: HTTP })), [403, 'INSECURE_TRANSPORT'], 'followed over plain HTTP: refused');
});

// FINDING (review round 2, L4): the same for write URLs. `$binary-access-write` with a token is
// held to the type's read rules (its answer is the resource: ownReadRules), but a write URL was
// issued and followed under `$binary-access-write`'s and `$file-url`'s rules only.
async function writeUrl(s: Stack, headers: Record<string, string>): Promise<{ id: string; url: string }> {
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, ...headers, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf' } }],
    }),
  });
  const id = ((await c.json()) as { id: string }).id;
  const r = await fetch(
    `${s.gw.base}/DocumentReference/${id}/$file-url?permission=w&path=${encodeURIComponent('DocumentReference.content[0].attachment')}`,
    { headers: { ...s.auth, ...headers } },
  );
  const text = await r.text();
  if (r.status !== 200) throw new Error(`$file-url: ${r.status} ${text}`);
  const p = JSON.parse(text) as { parameter: { name: string; valueUrl?: string }[] };
  return { id, url: p.parameter.find((x) => x.name === 'url')!.valueUrl!.replace('http://gateway.test', s.gw.url) };
}

const upload = (url: string, headers: Record<string, string>) =>
  fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/pdf' }, body: PDF(70_000) });

t.test("write URLs: the type's read rules' client addresses hold at issue and at follow", async (t) => {
  const s = await gateway(t, { ipAllow: LAN }, 'DocumentReference');
  const { id, url } = await writeUrl(s, INSIDE);
  t.same(
    await outcome(
      fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content[0].attachment`, {
        method: 'POST',
        headers: { ...s.auth, ...OUTSIDE, 'content-type': 'application/pdf' },
        body: PDF(70_000),
      }),
    ),
    [403, 'FORBIDDEN'],
    'control: from outside the LAN, the upload with a token is refused',
  );
  t.same(await outcome(upload(url, OUTSIDE)), [403, 'FORBIDDEN'], 'the write URL, followed from outside the LAN: refused');
  t.same(
    await outcome(
      fetch(`${s.gw.base}/DocumentReference/${id}/$file-url?permission=w&path=DocumentReference.content[0].attachment`, {
        headers: { ...s.auth, ...OUTSIDE },
      }),
    ),
    [403, 'FORBIDDEN'],
    'nor issued to a caller outside it',
  );
  const ok = await upload(url, INSIDE);
  t.equal(ok.status, 200, 'from inside: the upload goes through');
  await ok.arrayBuffer();
});

t.test("write URLs: the type's read rules' HTTPS requirement holds", async (t) => {
  const s = await gateway(t, { https: true }, 'DocumentReference');
  const { url } = await writeUrl(s, { 'x-forwarded-proto': 'https' });
  t.match(url, /spr=https&/, 'issued for https only, since reading DocumentReference requires it');
  t.same(await outcome(upload(url, { 'x-forwarded-proto': 'http' })), [403, 'INSECURE_TRANSPORT'], 'followed over plain HTTP: refused');
});
