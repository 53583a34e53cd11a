// FINDING (issue 12 hole 6, operation bodies): a $graphql mutation writes resources whose
// attachments sit inside the query text, where no content check sees them (a small HTML `data`
// passed the size bound). Only GraphQL queries are accepted now, parsed with graphql-js.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

const HTML = Buffer.from('<html><script>alert(1)</script></html>').toString('base64');
const MUTATION = `mutation { DocumentReferenceCreate(res: { resourceType: "DocumentReference", status: "current", content: [{ attachment: { contentType: "text/html", data: "${HTML}" } }] }) { id } }`;

t.test('GraphQL mutations are refused in every form; queries pass', async (t) => {
  const s = await stack(t);
  const reached = () => s.up.requests.filter((r) => r.url.includes('graphql')).length;
  const post = (body: string, type: string, path = '$graphql') =>
    fetch(`${s.gw.base}/${path}`, { method: 'POST', headers: { ...s.auth, 'content-type': type }, body });
  const get = (query: string) => fetch(`${s.gw.base}/$graphql?query=${encodeURIComponent(query)}`, { headers: s.auth });

  t.same(await outcome(post(JSON.stringify({ query: MUTATION }), 'application/json')), [403, 'GRAPHQL_MUTATION'], 'JSON body');
  t.same(
    await outcome(
      post(JSON.stringify({ query: MUTATION.replace('mutation', '\\u006dutation') }).replace('\\\\u006d', '\\u006d'), 'application/json'),
    ),
    [403, 'GRAPHQL_MUTATION'],
    'JSON-escaped keyword',
  );
  t.same(await outcome(post(MUTATION, 'application/graphql')), [403, 'GRAPHQL_MUTATION'], 'application/graphql');
  t.same(
    await outcome(post(new URLSearchParams({ query: MUTATION }).toString(), 'application/x-www-form-urlencoded')),
    [403, 'GRAPHQL_MUTATION'],
    'form',
  );
  t.same(await outcome(get(MUTATION)), [403, 'GRAPHQL_MUTATION'], 'GET');
  t.same(await outcome(get(`query A { PatientList { id } } ${MUTATION}`)), [403, 'GRAPHQL_MUTATION'], 'behind a query');
  t.same(await outcome(get('subscription { x }')), [403, 'GRAPHQL_MUTATION'], 'subscription');
  t.same(
    await outcome(post(JSON.stringify({ query: MUTATION }), 'application/json', 'Patient/1/$graphql')),
    [403, 'GRAPHQL_MUTATION'],
    'instance level',
  );
  t.same(await outcome(get('{ PatientList { id ')), [400, 'BAD_REQUEST'], 'a document that does not parse');
  const twice = `${s.gw.base}/$graphql?query=${encodeURIComponent('{ PatientList { id } }')}&query=${encodeURIComponent(MUTATION)}`;
  t.same(
    await outcome(fetch(twice, { headers: s.auth })),
    [400, 'BAD_REQUEST'],
    'query given twice (a last-wins server would run the second)',
  );
  t.same(
    await outcome(post(`query=${encodeURIComponent('{ a }')}&query=${encodeURIComponent(MUTATION)}`, 'application/x-www-form-urlencoded')),
    [400, 'BAD_REQUEST'],
    'twice in a form',
  );
  t.same(await outcome(post(JSON.stringify({ nothing: 1 }), 'application/json')), [400, 'BAD_REQUEST'], 'no document');
  // Found from outside: the same mutation as a batch entry ran.
  for (const type of ['batch', 'transaction']) {
    const b = await fetch(s.gw.base, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Bundle',
        type,
        entry: [
          { request: { method: 'POST', url: '$graphql' }, resource: { resourceType: 'Parameters', query: MUTATION } },
          { request: { method: 'GET', url: `$graphql?query=${encodeURIComponent(MUTATION)}` } },
        ],
      }),
    });
    t.same(await outcome(b), [400, 'BAD_BUNDLE'], `$graphql in a ${type}`);
  }
  t.equal(reached(), 0, 'none reached the upstream');

  for (const query of ['{ PatientList { id } }', '# mutation in a comment\n{ PatientList(name: "mutation") { id } }']) {
    const r = await get(query);
    t.not(r.status, 403, `a query passes: ${query}`);
    await r.arrayBuffer();
  }
  const r = await post(JSON.stringify({ query: '{ PatientList { id } }' }), 'application/json');
  t.equal(r.status, 200, 'a POSTed query passes');
  await r.arrayBuffer();
  t.equal(reached(), 3);
});
