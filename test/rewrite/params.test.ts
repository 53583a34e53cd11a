// `_inflate` (read wherever and however it is spelled, taken out of the query) and the JSON-only rule for rewritten answers.
import type { IncomingMessage } from 'node:http';
import t from 'tap';
import type { Interaction } from '../../src/fhir/interaction.js';
import { requireJson, rewriteParams } from '../../src/rewrite/params.js';

const inflate = { enabled: true, maxBytesPerResponse: 1000 };
const read = (query: string): Interaction => ({
  kind: 'read',
  resourceType: 'Patient',
  id: '1',
  method: 'GET',
  path: 'Patient/1',
  query,
});

t.test('_inflate lowers the policy, never raises it, and never reaches the upstream', async (t) => {
  const cases: [string, { inflate: boolean; maxBytes: number }, string][] = [
    ['', { inflate: true, maxBytes: 1000 }, ''],
    ['_inflate=false', { inflate: false, maxBytes: 1000 }, ''],
    ['a=1&_inflate=10', { inflate: true, maxBytes: 10 }, 'a=1'],
    ['_inflate=99999', { inflate: true, maxBytes: 1000 }, ''],
    ['%5Finflate=0&b=2', { inflate: true, maxBytes: 0 }, 'b=2'],
    ['_inflat%65=false', { inflate: false, maxBytes: 1000 }, ''],
    ['a=1;_inflate=false', { inflate: false, maxBytes: 1000 }, 'a=1'],
    ['name=%C3%A9', { inflate: true, maxBytes: 1000 }, 'name=%C3%A9'],
  ];
  for (const [query, want, left] of cases) {
    const { params, interaction } = rewriteParams(read(query), inflate);
    t.match(params, want, query);
    t.equal(interaction.query, left, `${query}: what the upstream gets`);
  }
  t.equal(rewriteParams(read(''), inflate).params.owners, 'root');
  t.equal(rewriteParams({ ...read(''), kind: 'search' }, inflate).params.owners, 'entries');
  t.equal(rewriteParams({ ...read(''), kind: 'operation' }, inflate).params.owners, 'by-type');
  for (const bad of ['_inflate=lots', '_inflate=1&_inflate=2', '_inflate=-1'])
    t.throws(() => rewriteParams(read(bad), inflate), { code: 'BAD_REQUEST' }, bad);
});

t.test('JSON only: XML-only clients get 406; _format overrides Accept; the upstream is asked for uncompressed JSON', async (t) => {
  const req = (accept?: string) =>
    ({ headers: accept === undefined ? {} : { accept, 'accept-encoding': 'gzip' } }) as unknown as IncomingMessage;
  for (const [accept, query, ok] of [
    [undefined, '', true],
    ['', '', true],
    ['application/fhir+xml', '', false],
    ['application/fhir+xml', '_format=json', true],
    ['application/fhir+json', '_format=xml', false],
    ['application/fhir+xml;q=0.9, application/json;q=0.1', '', true],
    ['application/json;q=0', '', false],
    ['text/html, */*;q=0.8', '', true],
  ] as const) {
    const r = req(accept);
    if (ok) {
      requireJson(r, read(query));
      t.equal(r.headers.accept, 'application/fhir+json', `${accept} ${query}`);
      if (accept) t.equal(r.headers['accept-encoding'], 'identity');
    } else t.throws(() => requireJson(r, read(query)), { code: 'NOT_ACCEPTABLE' }, `${accept} ${query}`);
  }
});
