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

async function gateway(t: Test, require: Record<string, unknown>): Promise<Stack> {
  return stack(t, {
    // The test client (127.0.0.1) plays the load balancer: its X-Forwarded-For/-Proto are believed.
    server: { trustedProxies: ['127.0.0.1/32'] },
    rules: [
      {
        name: 'binary-reads',
        match: { resourceTypes: ['Binary'], interactions: ['read', 'vread', 'search', 'history'] },
        require,
      },
    ],
    signedUrls: signedUrlsConfig(urlKeys(t)),
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
