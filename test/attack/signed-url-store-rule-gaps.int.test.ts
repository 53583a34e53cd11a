// FINDING (signed URLs review): `$file-url?via=store` refuses a URL that needs a constraint the
// store cannot enforce (an `ip` asked for, a stored policy, HTTPS required by the rule), but the
// policy rules' own client-address conditions (`ipAllow`/`ipDeny`) are not among those gaps. Where
// reading Binary is allowed only from a LAN, a caller inside it gets an S3 presigned URL, with no
// gap named and nothing accepted in `signedUrls.store.acceptGaps`, that anyone anywhere can follow;
// the gateway's own URL for the same content is refused outside the LAN (docs/signed-urls.md step 7:
// "a URL never widens them"). Likewise the type's read rules' HTTPS requirement is not seen when
// only they (not the `$binary-access-read` rule) require it, so no `https` gap is raised.
// Cause: src/binary/file-urls.ts `storeUrl` builds `needs` from r.sip, plan.policy and r.httpAllowed
// only; the rule's ipAllow/ipDeny (and the type's read rules) never enter it.
import t, { type Test } from 'tap';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { s3Storage, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome, outcomeCodeOf } from './helpers.js';

const LAN = ['10.20.0.0/16'];
const INSIDE = { 'x-forwarded-for': '10.20.1.1' };
const OUTSIDE = { 'x-forwarded-for': '203.0.113.9' };

async function s3Stack(t: Test, rules: unknown[]): Promise<Stack> {
  const { storage } = await s3Storage(t);
  return stack(t, {
    server: { trustedProxies: ['127.0.0.1/32'] },
    rules,
    storage,
    signedUrls: signedUrlsConfig(urlKeys(t), { store: { enabled: true } }),
  });
}

async function binary(s: Stack, headers: Record<string, string>): Promise<string> {
  const c = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, ...headers, 'content-type': 'application/pdf' },
    body: PDF(90_000),
  });
  await c.arrayBuffer();
  if (c.status !== 201) throw new Error(`upload: ${c.status}`);
  return (c.headers.get('location') ?? '').split('/')[5];
}

const urlOf = (text: string) =>
  (JSON.parse(text) as { parameter: { name: string; valueUrl?: string }[] }).parameter.find((p) => p.name === 'url')!.valueUrl!;

t.test("S3: a rule's client addresses are a gap the store cannot enforce", async (t) => {
  const s = await s3Stack(t, [{ name: 'binary-lan', match: { resourceTypes: ['Binary'] }, require: { ipAllow: LAN } }]);
  const id = await binary(s, INSIDE);

  // The gateway's own URL keeps the LAN condition.
  const own = await fetch(`${s.gw.base}/Binary/${id}/$file-url`, { headers: { ...s.auth, ...INSIDE } });
  const ownUrl = urlOf(await own.text()).replace('http://gateway.test', s.gw.url);
  t.same(await outcome(fetch(ownUrl, { headers: OUTSIDE })), [403, 'FORBIDDEN'], "control: the gateway's URL, outside the LAN");

  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store`, { headers: { ...s.auth, ...INSIDE } });
  const text = await r.text();
  if (r.status === 200) {
    const d = await fetch(urlOf(text)); // straight to the store: no address is ever looked at
    await d.arrayBuffer();
    t.comment(`issued a store URL with no gap accepted; the store served it to anyone: ${d.status}`);
  }
  t.same([r.status, outcomeCodeOf(text)], [400, 'BAD_REQUEST'], 'refused: the rule restricts client addresses, S3 URLs cannot (gap ip)');
});

t.test("S3: HTTPS required by the type's read rules is a gap too", async (t) => {
  const s = await s3Stack(t, [
    {
      name: 'binary-reads',
      match: { resourceTypes: ['Binary'], interactions: ['read', 'vread', 'search', 'history'] },
      require: { https: true },
    },
  ]);
  const HTTPS = { 'x-forwarded-proto': 'https' };
  const id = await binary(s, HTTPS);
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store`, { headers: { ...s.auth, ...HTTPS } });
  const text = await r.text();
  if (r.status === 200) t.comment(`issued: ${urlOf(text).slice(0, 60)}… (an http:// S3 endpoint serves it over plain HTTP)`);
  t.same([r.status, outcomeCodeOf(text)], [400, 'BAD_REQUEST'], 'refused: reading Binary requires HTTPS, S3 URLs cannot (gap https)');
});
