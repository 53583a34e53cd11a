// FINDING (limits): the GraphQL request "passes the security pipeline as operation:
// gateway-graphql: HTTPS, client addresses, size, the token". The size is only the declared one
// (requireDeclaredSize reads Content-Length): a multipart request sent chunked is never counted
// against that rule's maxRequestBytes (MultipartRequest counts nothing; each file is held only to
// its upload rule's limit). An operator's cap on GraphQL requests is void for chunked bodies.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { pngOfAtLeast, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { uploadForm } from '../helpers/graphql.js';

t.test("gateway-graphql's maxRequestBytes holds for a chunked request as for a declared one", async (t) => {
  const s = await stack(t, {
    graphql: { enabled: true },
    signedUrls: signedUrlsConfig(urlKeys(t)),
    rules: [{ name: 'gql', match: { interactions: ['operation'], operations: ['gateway-graphql'] }, limits: { maxRequestBytes: 100_000 } }],
  });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  const encoded = new Response(uploadForm(pngOfAtLeast(600_000), { contentType: 'image/png', select: 'fileId size' }));
  const type = encoded.headers.get('content-type')!;
  const bytes = Buffer.from(await encoded.arrayBuffer());
  const headers = { ...auth, 'graphql-require-preflight': '1', 'content-type': type };

  const declared = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers, body: bytes });
  await declared.arrayBuffer();
  t.equal(declared.status, 413, 'declared 600 kB: refused by the rule');

  const chunked = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers,
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < bytes.length; i += 64 * 1024) c.enqueue(bytes.subarray(i, i + 64 * 1024));
        c.close();
      },
    }),
    duplex: 'half',
  });
  const body = (await chunked.json()) as { data?: { uploadFile?: unknown } | null };
  t.notOk(body.data?.uploadFile, `chunked 600 kB: refused too (got ${JSON.stringify(body).slice(0, 120)})`);
  t.equal(s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length, 0, 'nothing stored');
});
