// FINDING (errors): docs/graphql.md — "Every error carries the catalogue code in extensions.code
// and its HTTP status in extensions.status", and a request that does not parse is a GraphQL-over-
// HTTP 400. Request errors (parse, validation, variable coercion, unknown operationName) carry
// the code but no status (api.ts withCode); a body that is not JSON, or a multipart request with
// its fields out of order, is answered as a FHIR OperationOutcome with no `errors` at all.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { stack } from '../helpers/binary-stack.js';

t.test('every GraphQL error carries extensions.code and extensions.status', async (t) => {
  const s = await stack(t, { graphql: { enabled: true } });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  for (const [body, why] of [
    ['{"query":"{ file(fileId: "}', 'does not parse'],
    ['{"query":"{ nosuch }"}', 'does not validate'],
    ['{"query":"query($x: ID!) { file(fileId: $x) { fileId } }","variables":{"x":{}}}', 'a variable that does not coerce'],
    ['{"query":"{ file(fileId: \\"a\\") { fileId } }","operationName":"Nope"}', 'an unknown operationName'],
    ['not json', 'a body that is not JSON'],
  ] as const) {
    const r = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body });
    const answer = (await r.json()) as { errors?: { extensions?: { code?: string; status?: number } }[] };
    t.equal(r.status, 400, why);
    t.match(answer.errors?.[0]?.extensions, { code: 'BAD_REQUEST', status: 400 }, `${why}: code and status in extensions`);
  }
});
