// FINDING (audit / fail-closed): the audit trail records "every request for a binary-bearing
// resource type or a $binary-access-* operation — served, refused, failed or cut short"
// (http/exchange-audit.ts). A GraphQL request is `operation: gateway-graphql` with no resource
// type, so it is audited only when it touched a blob or issued a URL, and then with the HTTP
// status (200) as its outcome. Refused content reads (refreshFileUrl), refused uploads and refused
// DocumentReference creates leave no audit record at all — the same refusals over REST
// ($file-url, POST DocumentReference) are audited as `refused` — and a request whose upload was
// refused after another was stored is audited as `success`.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

type Body = { data?: Record<string, Record<string, unknown> | null> | null; errors?: { extensions?: { code?: string } }[] };

t.test('GraphQL refusals are on the audit trail, with their outcome', async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const tok = async (sub: string, scope: string, extra: Record<string, unknown> = {}) => ({
    authorization: `Bearer ${await mintToken(s.key, { claims: { sub, scope, ...extra } })}`,
  });
  const alice = await tok('alice', 'user/*.cruds files.write fhir.write');
  const post = async (auth: Record<string, string>, body: FormData | string) => {
    const r = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { ...auth, ...(typeof body === 'string' ? { 'content-type': 'application/json' } : { 'graphql-require-preflight': '1' }) },
      body,
    });
    return { id: r.headers.get('x-request-id')!, body: (await r.json()) as Body };
  };
  const uploadForm = (query: string, files: Buffer[]) => {
    const form = new FormData();
    const vars = Object.fromEntries(files.map((_, i) => [`f${i}`, null]));
    form.append('operations', JSON.stringify({ query, variables: vars }));
    form.append('map', JSON.stringify(Object.fromEntries(files.map((_, i) => [String(i), [`variables.f${i}`]]))));
    files.forEach((f, i) => form.append(String(i), new Blob([f]), `f${i}`));
    return form;
  };
  const UP = (n: number) =>
    `mutation(${[...Array(n).keys()].map((i) => `$f${i}: Upload!`).join(', ')}) { ${[...Array(n).keys()]
      .map((i) => `u${i}: uploadFile(forEntity: "Patient/1", data: $f${i}, contentType: "application/pdf") { storagePath }`)
      .join(' ')} }`;
  const auditOf = async (reqId: string) => {
    await new Promise((r) => setTimeout(r, 300));
    return s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as { outcome?: string; code?: string } | undefined;
  };

  const up = await post(alice, uploadForm(UP(1), [PDF(20_000)]));
  const storagePath = up.body.data!['u0']!['storagePath'] as string;
  const bound = await post(
    alice,
    JSON.stringify({
      query: 'mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }',
      variables: { r: { status: 'current', subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePath } }] } },
    }),
  );
  const docId = String(bound.body.data!['createDocumentReference']!['id']);

  // REST: a $file-url refused for want of read is audited as refused.
  const noRead = await tok('alice', 'user/Patient.cruds files.write');
  const rest = await fetch(`${s.gw.base}/DocumentReference/${docId}/$file-url?path=DocumentReference.content[0].attachment`, {
    headers: noRead,
  });
  await rest.arrayBuffer();
  t.match(await auditOf(rest.headers.get('x-request-id')!), { outcome: 'refused' }, 'REST $file-url refusal: audited');

  const refresh = await post(
    noRead,
    JSON.stringify({
      query: 'mutation($id: ID!) { refreshFileUrl(fileId: $id) { url } }',
      variables: { id: storagePath.split(':').pop() },
    }),
  );
  t.equal(refresh.body.errors?.[0]?.extensions?.code, 'INSUFFICIENT_SCOPE');
  t.match(await auditOf(refresh.id), { outcome: 'refused', code: 'INSUFFICIENT_SCOPE' }, 'refreshFileUrl refusal: audited as refused');

  const pat = await tok('pat', 'patient/*.cruds files.write fhir.write', { patient: '2' });
  const foreign = await post(
    pat,
    JSON.stringify({
      query: 'mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }',
      variables: { r: { status: 'current', subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePath } }] } },
    }),
  );
  t.equal(foreign.body.errors?.[0]?.extensions?.code, 'INSUFFICIENT_SCOPE');
  t.match(await auditOf(foreign.id), { outcome: 'refused' }, "a patient's create in another compartment: audited as refused");

  const half = await post(alice, uploadForm(UP(2), [PDF(20_000), Buffer.from('<html><script>alert(1)</script></html>')]));
  t.equal(half.body.errors?.[0]?.extensions?.code, 'UNSUPPORTED_MEDIA');
  t.not((await auditOf(half.id))?.outcome, 'success', 'an upload refused for its content is not audited as a success');
});
