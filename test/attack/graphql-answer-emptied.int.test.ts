// FINDING (attack round 5, answers that look whole but are not): every `$graphql` query answer is
// replaced by `{}` with a 200. A GraphQL response's root is `{"data": {...}}`; the response rewrite
// takes a root of unknown resourceType as a possible Binary and its `data` member as Binary.data
// (inflate.ts carriesContent: "a root whose type is not known yet"); the value is an object, not
// a string, so it is "left out" as malformed attachment data. The client gets a well-formed, empty
// answer — no error, no cut — indistinguishable from "nothing matched". The gateway documents
// `$graphql` queries as accepted (docs/security.md; mutations alone are refused).
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';

t.test('a $graphql query answer reaches the client as the upstream gave it', async (t) => {
  const s = await stack(t);
  const r = await fetch(`${s.gw.base}/Patient`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Gql' }] }),
  });
  const id = ((await r.json()) as { id: string }).id;
  const query = JSON.stringify({ query: `{ Patient(id: "${id}") { id name { family } } }` });

  const direct = await fetch(`${s.up.url}/$graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: query });
  const expected = (await direct.json()) as Record<string, unknown>;
  t.match(expected, { data: { Patient: { id, name: [{ family: 'Gql' }] } } }, 'control: the upstream answers the query');

  const through = await fetch(`${s.gw.base}/$graphql`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/json' },
    body: query,
  });
  const text = await through.text();
  t.comment(`through the gateway: ${through.status} ${text.slice(0, 200)}`);
  t.ok(through.status !== 200 || text !== '{}', 'not a 200 with an emptied answer');
  if (through.status === 200) t.same(JSON.parse(text), expected, 'the answer as the upstream gave it');
});
