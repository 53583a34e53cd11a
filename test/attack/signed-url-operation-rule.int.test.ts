// FINDING (signed URLs review): `$file-url` is authorized under the rule that matches the
// `file-url` operation, never under the rule the operator wrote for `$binary-access-read`. A rule
// `{ match: { operations: [binary-access-read] }, require: { scopes: [files.read] } }` (the read
// twin of the shipped `binary-access-write` rule) keeps a token without `files.read` from reading
// content with `$binary-access-read`, but the same token gets a signed URL for that content from
// `$file-url` and follows it with no token at all. docs/signed-urls.md: "The checks are those of
// `$binary-access-read` on the same instance: the token, its SMART scopes …".
// Cause: src/binary/file-urls.ts `issue` only reads `ruleFor(contentReadOf(...))` for
// `require.https`; its token/scope/auth requirements are never checked (the pipeline ran the
// `file-url` rule). Follow (src/http/flow.ts `signedFile`) re-checks only its address and transport.
import t from 'tap';
import { PDF, sha256, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome, outcomeCodeOf } from './helpers.js';

t.test('a rule for $binary-access-read holds for $file-url too', async (t) => {
  const s = await stack(t, {
    rules: [
      {
        name: 'content-read',
        match: { interactions: ['operation'], operations: ['binary-access-read'] },
        require: { scopes: ['files.read'] },
      },
    ],
    signedUrls: signedUrlsConfig(urlKeys(t)),
  });
  const pdf = PDF(70_000);
  const c = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/pdf' }, body: pdf });
  t.equal(c.status, 201);
  await c.arrayBuffer();
  const id = (c.headers.get('location') ?? '').split('/')[5];

  // s.auth: user/*.cruds fhir.write — no files.read.
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${id}/$binary-access-read`, { headers: s.auth })),
    [403, 'INSUFFICIENT_SCOPE'],
    'control: the content read itself is refused without files.read',
  );

  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url`, { headers: s.auth });
  const body = await r.text();
  if (r.status === 200) {
    const url = (JSON.parse(body) as { parameter: { name: string; valueUrl?: string }[] }).parameter
      .find((p) => p.name === 'url')!
      .valueUrl!.replace('http://gateway.test', s.gw.url);
    const f = await fetch(url);
    const got = Buffer.from(await f.arrayBuffer());
    t.comment(`$file-url issued a URL; following it with no token: ${f.status}, same bytes: ${sha256(got) === sha256(pdf)}`);
  }
  t.same(
    [r.status, outcomeCodeOf(body)],
    [403, 'INSUFFICIENT_SCOPE'],
    '$file-url must be refused as $binary-access-read is (files.read missing)',
  );
});
