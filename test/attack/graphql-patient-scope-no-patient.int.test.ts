// FINDING (authorization): a token whose only SMART scopes are patient/ ones but which carries no
// (string) launch patient is a patient's token: REST grants it nothing (smartGrants skips a
// patient/ scope without a patient). GraphQL's uploadFile and createDocumentReference check only
// `covers(scope, type, 'c')` in any context and skip the patient checks when `principal.patient`
// is undefined: such a token uploads for, and files a DocumentReference into, any patient's
// compartment. Here the `patient` claim is a number (many ASes send ids as JSON numbers), so the
// gateway sees no launch patient.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { codeOf, gqlJson, gqlUpload, restCreateStatus, storagePathOf } from '../helpers/graphql.js';

const CREATE_DOC = `mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }`;

t.test("patient/ scopes without a launch patient: no patient's compartment is open to GraphQL writes", async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const token = await mintToken(s.key, { claims: { sub: 'pat-app-user', scope: 'patient/*.cruds files.write fhir.write', patient: 2 } });
  const auth = { authorization: `Bearer ${token}` };

  // REST: the same token cannot create a DocumentReference for patient 999 (nor for any patient).
  t.equal(
    await restCreateStatus(s, auth, { subject: { reference: 'Patient/999' } }),
    403,
    'REST: a patient/ scope without a launch patient grants no create',
  );

  const up = await gqlUpload(s, auth, PDF(20_000), { forEntity: 'Patient/999' });
  t.equal(codeOf(up), 'INSUFFICIENT_SCOPE', 'GraphQL uploadFile for Patient/999 is refused');

  const before = s.up.requests.filter((r) => r.method === 'POST').length;
  const created = await gqlJson(s, auth, CREATE_DOC, {
    r: { status: 'current', subject: { reference: 'Patient/999' }, content: [{ attachment: { url: storagePathOf(up) } }] },
  });
  t.ok(created.errors, 'createDocumentReference for Patient/999 is refused');
  t.equal(s.up.requests.filter((r) => r.method === 'POST').length, before, 'nothing is written upstream into patient 999');
});
