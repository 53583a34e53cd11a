// FINDING (authorization / scope confusion): SMART v2 granular scopes restrict a grant
// (`user/DocumentReference.c?category=…`). The REST path never lets a restricted scope grant a
// create (smartGrants: "a restricted scope grants only a search"). GraphQL's uploadFile and
// createDocumentReference test `covers(scope, type, 'c')`, which ignores restrictions: a token
// allowed to create only one category of DocumentReference creates any category.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { codeOf, gqlJson, gqlUpload, restCreateStatus, storagePathOf } from '../helpers/graphql.js';

const ALLOWED = 'http://loinc.org|34133-9';

t.test('a category-restricted create scope does not create other categories through GraphQL', async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const scope = `user/DocumentReference.c?category=${ALLOWED} user/Patient.r files.write fhir.write`;
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'scribe', scope } })}` };
  const other = [{ coding: [{ system: 'http://loinc.org', code: '11488-4', display: 'Consult note' }] }];

  t.equal(
    await restCreateStatus(s, auth, { category: other, subject: { reference: 'Patient/1' } }),
    403,
    'REST: the restricted scope creates nothing of another category',
  );

  const storagePath = storagePathOf(await gqlUpload(s, auth, PDF(20_000)));
  const writes = () => s.up.requests.filter((r) => r.method === 'POST').length;
  const before = writes();
  const created = await gqlJson(s, auth, 'mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }', {
    r: { status: 'current', category: other, subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePath } }] },
  });
  t.equal(codeOf(created), 'INSUFFICIENT_SCOPE', 'GraphQL: a Consult note is refused to a discharge-summary-only scope');
  t.equal(writes(), before, 'nothing written upstream');
});
