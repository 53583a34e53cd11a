// FINDING (authorization, Low): refreshFileUrl of a bound file promises "everything $file-url on
// the resource that holds it checks". When the rule for that type forwards the caller's token
// (`forwardAuthorization: true`), $file-url asks the upstream as the caller (SecurityContextGuard
// .require, and the attachment read itself) so the FHIR server's own access rules must agree.
// FileUrls.readUrl runs under the GraphQL request's rule instead (x.rule = gateway-graphql's): it
// reads the resource without the caller's token, and the upstream's refusal is never asked for.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { relay } from '../helpers/lifecycle.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { gqlJson, gqlUpload, storagePathOf } from '../helpers/graphql.js';

t.test("refreshFileUrl asks the upstream as the caller where the type's rule forwards the token", async (t) => {
  let revoked: string | undefined; // the FHIR server's own access rules now refuse this token the documents
  const s = await stack(
    t,
    {
      graphql: { enabled: true },
      signedUrls: signedUrlsConfig(urlKeys(t)),
      rules: [{ name: 'documents', match: { resourceTypes: ['DocumentReference'] }, forwardAuthorization: true }],
    },
    (up) =>
      relay(t, up.url, (req, res) => {
        if (revoked === undefined || req.headers.authorization !== revoked || !(req.url ?? '').includes('DocumentReference'))
          return undefined;
        res.writeHead(403, { 'content-type': 'application/fhir+json' });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden' }] }));
        return 'answered';
      }),
  );
  const token = `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write fhir.write' } })}`;
  const auth = { authorization: token };
  const storagePath = storagePathOf(await gqlUpload(s, auth, PDF(20_000)));
  const gql = (query: string, variables: Record<string, unknown>) => gqlJson(s, auth, query, variables);
  const created = await gql('mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }', {
    r: { status: 'current', subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePath } }] },
  });
  t.notOk(created.errors, JSON.stringify(created.errors));
  const id = String(created.data!['createDocumentReference']!['id']);

  revoked = token;
  const rest = await fetch(`${s.gw.base}/DocumentReference/${id}/$file-url?path=DocumentReference.content[0].attachment`, {
    headers: auth,
  });
  await rest.arrayBuffer();
  t.equal(rest.status, 403, '$file-url: the FHIR server refuses the caller, so no URL');
  const refreshed = await gql('mutation($id: ID!) { refreshFileUrl(fileId: $id) { url } }', { id: storagePath.split(':').pop() });
  t.ok(refreshed.errors, 'refreshFileUrl: no URL either');
  t.notOk(refreshed.data?.['refreshFileUrl'], JSON.stringify(refreshed.data));
});
