// FINDING (fail-closed): uploadFile returns `UploadedFile!` (non-null), so when one of several
// uploads in a mutation is refused (its content, its part out of order, a second use of a key)
// GraphQL nulls the whole `data`: the files stored before it stay in the store as pending blobs
// whose ids nobody was told — unbindable, unreadable, invisible to `file`, until the sweeper's
// temporary retention (24 h) ends. Each such request stores up to graphql.maxFiles - 1 files of
// the rule's maxRequestBytes that no one can name.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

const TWO = `mutation($a: Upload!, $b: Upload!) {
  a: uploadFile(forEntity: "Patient/1", data: $a, contentType: "application/pdf") { fileId }
  b: uploadFile(forEntity: "Patient/1", data: $b, contentType: "application/pdf") { fileId }
}`;
type Body = { data?: { a?: { fileId: string } } | null; errors?: { extensions?: { code?: string } }[] };

t.test('a refused upload in a mutation leaves no stored file nobody can name', async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  const blobs = () => s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length;
  for (const [second, why] of [
    [Buffer.from('<html><script>alert(1)</script></html>'), 'the second file refused by the sniffer'],
    [undefined, 'the second part named like the first (out of order)'],
  ] as const) {
    const before = blobs();
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: TWO, variables: { a: null, b: null } }));
    form.append('map', JSON.stringify({ 0: ['variables.a'], 1: ['variables.b'] }));
    form.append('0', new Blob([PDF(50_000)]), 'a.pdf');
    form.append(second ? '1' : '0', new Blob([second ?? PDF(50_000)]), 'b.pdf');
    const r = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'graphql-require-preflight': '1' }, body: form });
    const body = (await r.json()) as Body;
    t.ok(body.errors, `${why}: refused`);
    const told = body.data?.a?.fileId;
    await new Promise((res) => setTimeout(res, 200));
    t.ok(told !== undefined || blobs() === before, `${why}: the stored first file is named in the answer, or not kept`);
  }
});
