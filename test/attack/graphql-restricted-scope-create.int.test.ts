// FINDING (authorization / scope confusion): SMART v2 granular scopes restrict a grant
// (`user/DocumentReference.c?category=…`). The REST path never lets a restricted scope grant a
// create (smartGrants: "a restricted scope grants only a search"). GraphQL's uploadFile and
// createDocumentReference test `covers(scope, type, 'c')`, which ignores restrictions: a token
// allowed to create only one category of DocumentReference creates any category.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

type Body = { data?: Record<string, Record<string, unknown> | null> | null; errors?: { extensions?: { code?: string } }[] };
const ALLOWED = 'http://loinc.org|34133-9';

t.test('a category-restricted create scope does not create other categories through GraphQL', async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const scope = `user/DocumentReference.c?category=${ALLOWED} user/Patient.r files.write fhir.write`;
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'scribe', scope } })}` };
  const other = [{ coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'Consult note' }] }];

  const rest = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      category: other,
      subject: { reference: 'Patient/1' },
      content: [{ attachment: { url: 'http://x.test/a' } }],
    }),
  });
  await rest.arrayBuffer();
  t.equal(rest.status, 403, 'REST: the restricted scope creates nothing of another category');

  const form = new FormData();
  form.append(
    'operations',
    JSON.stringify({
      query: 'mutation($f: Upload!) { uploadFile(forEntity: "Patient/1", data: $f, contentType: "application/pdf") { storagePath } }',
      variables: { f: null },
    }),
  );
  form.append('map', JSON.stringify({ 0: ['variables.f'] }));
  form.append('0', new Blob([PDF(20_000)]), 'a.pdf');
  const up = (await (
    await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'graphql-require-preflight': '1' }, body: form })
  ).json()) as Body;
  const storagePath = (up.data?.['uploadFile']?.['storagePath'] as string | undefined) ?? 'urn:fhir-binary-gateway:file:none';
  const writes = () => s.up.requests.filter((r) => r.method === 'POST').length;
  const before = writes();
  const created = (await (
    await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        query: 'mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }',
        variables: {
          r: { status: 'current', category: other, subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePath } }] },
        },
      }),
    })
  ).json()) as Body;
  t.equal(
    created.errors?.[0]?.extensions?.code,
    'INSUFFICIENT_SCOPE',
    'GraphQL: a Consult note is refused to a discharge-summary-only scope',
  );
  t.equal(writes(), before, 'nothing written upstream');
});
