// The cost rule of the files GraphQL API: depth and selections, fragments expanded, in linear time.
import t from 'tap';
import { parse, specifiedRules, validate } from 'graphql';
import { depthAndFieldLimit } from '../../src/graphql/limits.js';
import { filesSchema } from '../../src/graphql/schema.js';

const schema = filesSchema();
const errors = (doc: string, depth = 10, fields = 200, roots = 8) =>
  validate(schema, parse(doc), [...specifiedRules, depthAndFieldLimit(depth, fields, roots)]).map((e) => e.message);

t.test('within the limits: no error; past them: one each', async (t) => {
  t.same(errors('query { file(fileId: "x") { fileId size } }'), []);
  t.match(errors('query { file(fileId: "x") { fileId size state } }', 10, 3), [/more than graphql.maxFields \(3\)/]);
  t.match(errors('query { file(fileId: "x") { fileId } }', 1), [/deeper than graphql.maxDepth \(1\)/]);
});

t.test('top-level fields are counted through aliases and fragments: each is a call to the store or the FHIR server', async (t) => {
  const aliased = (n: number) => `query { ${Array.from({ length: n }, (_, i) => `f${i}: file(fileId: "x") { fileId }`).join(' ')} }`;
  t.same(errors(aliased(3), 10, 200, 3), [], 'at the limit');
  t.match(errors(aliased(4), 10, 200, 3), [/more than graphql.maxRootFields \(3\) top-level fields/]);
  const spread =
    'query { ...A ... on Query { c: file(fileId: "z") { fileId } } } fragment A on Query { a: file(fileId: "x") { fileId } b: file(fileId: "y") { fileId } }';
  t.match(errors(spread, 10, 200, 2), [/maxRootFields/], 'through a fragment and an inline fragment');
  t.same(errors('query { __typename file(fileId: "x") { fileId } }', 10, 200, 1), [], '__typename does no work');
});

t.test('fragments are expanded: a doubling chain is refused quickly, its size computed once per fragment', async (t) => {
  const chain = Array.from({ length: 40 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join('\n');
  const doc = `query { ...F0 }\n${chain}\nfragment F40 on Query { __typename }`;
  const started = process.hrtime.bigint();
  t.match(errors(doc), [/more than graphql.maxFields/]);
  t.ok(process.hrtime.bigint() - started < 2_000_000_000n, 'decided at once, not by walking 2^40 spreads');
  const missing = `query { ...F0 }\n${Array.from({ length: 40 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join('\n')}`;
  t.ok(errors(missing).length > 0, 'a chain ending in an unknown fragment: refused, quickly');
  const cycle = 'query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }';
  t.match(errors(cycle), [/Cannot spread fragment "A" within itself/], 'a cycle: the spec rule says so');
});
