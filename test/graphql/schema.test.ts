// docs/graphql.md publishes the schema: the block there is the schema the gateway serves.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { buildSchema, printSchema } from 'graphql';
import { filesSchema, SDL } from '../../src/graphql/schema.js';

t.test('docs/graphql.md holds the served SDL, and it builds', async (t) => {
  const doc = readFileSync(new URL('../../docs/graphql.md', import.meta.url), 'utf8');
  const block = /```graphql\n([\s\S]*?)```/.exec(doc)?.[1];
  t.equal(block, SDL, 'the SDL block of docs/graphql.md');
  t.equal(printSchema(filesSchema()), printSchema(buildSchema(SDL)));
  t.ok(filesSchema().getMutationType()?.getFields()['uploadFile'], 'uploadFile is served');
});
