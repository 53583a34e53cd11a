// How the files GraphQL API reads a request, malformed ones included: the multipart spec's fields
// and parts in order, the JSON body, GraphQL over HTTP statuses. One gateway, many requests.
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { filesSchema } from '../../src/graphql/schema.js';
import type { GraphQLScalarType } from 'graphql';

const UPLOAD = 'mutation($file: Upload!) { uploadFile(forEntity: "Patient/1", data: $file, contentType: "application/pdf") { fileId } }';
const TWO =
  'mutation($a: Upload!, $b: Upload!) { a: uploadFile(forEntity: "Patient/1", data: $a, contentType: "application/pdf") { fileId } b: uploadFile(forEntity: "Patient/1", data: $b, contentType: "application/pdf") { fileId } }';

t.test('malformed GraphQL requests get clear refusals, never a hang or a 500', async (t) => {
  const s = await stack(t, { graphql: { enabled: true, maxDocumentBytes: 2048, maxFiles: 2 } });
  const auth = { authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write' } })}` };
  const url = `${s.gw.url}/graphql`;
  const send = async (body: string | FormData, headers: Record<string, string> = {}, method = 'POST') => {
    const r = await fetch(url, { method, headers: { ...auth, ...headers }, body, signal: AbortSignal.timeout(15_000) });
    const text = await r.text();
    const json = (() => {
      try {
        return JSON.parse(text) as Record<string, unknown>;
      } catch {
        return {};
      }
    })();
    const gqlCode = (json['errors'] as { extensions?: { code?: string } }[] | undefined)?.[0]?.extensions?.code;
    const fhirCode = (json['issue'] as { details?: { coding?: { code?: string }[] } }[] | undefined)?.[0]?.details?.coding?.[0]?.code;
    return { status: r.status, code: gqlCode ?? fhirCode, json };
  };
  const json = (o: unknown) => send(JSON.stringify(o), { 'content-type': 'application/json' });
  const form = (parts: [string, string | Blob, string?][]) => {
    const f = new FormData();
    for (const [name, value, filename] of parts) {
      if (typeof value === 'string') f.append(name, value);
      else f.append(name, value, filename ?? 'f.pdf');
    }
    return send(f, { 'graphql-require-preflight': '1' });
  };
  const pdf = () => new Blob([PDF(3000)]);
  const ops = (query = UPLOAD, variables: Record<string, unknown> = { file: null }) => JSON.stringify({ query, variables });

  t.match(await send('', {}, 'PUT'), { status: 405, code: 'METHOD_NOT_ALLOWED' });
  t.match(
    await send('{"query":"{ __typename }"}', { 'content-type': 'application/json', 'x-http-method-override': 'DELETE' }),
    { status: 400, code: 'METHOD_OVERRIDE' },
    'a method override, as in any request',
  );
  t.match(
    await send('{"query":"{ __typename }"}', { 'content-type': 'application/json', 'if-none-exist': 'identifier=x' }),
    { status: 400, code: 'BAD_REQUEST' },
    'If-None-Exist would reach the upstream with a transaction',
  );
  t.match(
    await send('x', { 'content-type': 'multipart/form-data', 'graphql-require-preflight': '1' }),
    { status: 400, code: 'BAD_REQUEST' },
    'multipart without a boundary',
  );
  t.match(await send('{ __typename }', { 'content-type': 'text/plain' }), { status: 415, code: 'UNSUPPORTED_MEDIA' });
  t.match(await send('{"query":"' + 'x'.repeat(3000) + '"}', { 'content-type': 'application/json' }), {
    status: 413,
    code: 'PAYLOAD_TOO_LARGE',
  });
  t.match(await send('{not json', { 'content-type': 'application/json' }), { status: 400, code: 'BAD_REQUEST' });
  t.match(await json({ variables: {} }), { status: 400, code: 'BAD_REQUEST' }, 'no query');
  t.match(await json({ query: '{ __typename }', variables: [] }), { status: 400 }, 'variables not an object');
  t.match(await json({ query: '{ __typename }', operationName: 7 }), { status: 400 }, 'operationName not a string');
  t.match(await json({ query: '{ __typename' }), { status: 400, code: 'BAD_REQUEST' }, 'a document that does not parse');
  t.match(await json({ query: '{ nope }' }), { status: 400, code: 'BAD_REQUEST' }, 'a document that does not validate');
  t.match(await json({ query: UPLOAD, variables: { file: 'x' } }), { status: 400 }, 'an Upload that is no file part');
  t.match(
    await json({ query: 'mutation { uploadFile(forEntity: "Patient/1", data: "x", contentType: "application/pdf") { fileId } }' }),
    { status: 400 },
    'an Upload literal',
  );
  t.throws(() => (filesSchema().getType('Upload') as GraphQLScalarType).serialize({}), /never sent back/, 'an Upload is never an answer');

  t.match(
    await form([
      ['0', pdf()],
      ['operations', ops()],
    ]),
    { status: 400, code: 'BAD_REQUEST' },
    'a file before operations',
  );
  t.match(await form([['operations', ops()]]), { status: 400, code: 'BAD_REQUEST' }, 'no map');
  t.match(
    await form([
      ['map', '{}'],
      ['operations', ops()],
    ]),
    { status: 400, code: 'BAD_REQUEST' },
    'map before operations',
  );
  t.match(
    await form([
      ['operations', 'x'.repeat(3000)],
      ['map', '{}'],
    ]),
    { status: 413, code: 'PAYLOAD_TOO_LARGE' },
    'operations too long',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', 'nope'],
      ['0', pdf()],
    ]),
    { status: 400 },
    'map not JSON',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', '[]'],
      ['0', pdf()],
    ]),
    { status: 400 },
    'map not an object',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', '{"0":["variables.file","variables.file"]}'],
      ['0', pdf()],
    ]),
    { status: 400 },
    'one file, two paths',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', '{"0":["query"]}'],
      ['0', pdf()],
    ]),
    { status: 400 },
    'a path outside variables',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', '{"0":["variables.nothere.x"]}'],
      ['0', pdf()],
    ]),
    { status: 400 },
    'a path to no variable',
  );
  t.match(
    await form([
      ['operations', ops()],
      ['map', '{"0":["variables.file"],"1":["variables.a"],"2":["variables.b"]}'],
      ['0', pdf()],
    ]),
    { status: 413 },
    'more map entries than maxFiles',
  );
  const missing = await form([
    ['operations', ops()],
    ['map', '{"0":["variables.file"]}'],
  ]);
  t.match(missing.json, { errors: [{ extensions: { code: 'BAD_REQUEST' } }] }, 'the file part never came');
  const swapped = await form([
    ['operations', ops(TWO, { a: null, b: null })],
    ['map', '{"a":["variables.a"],"b":["variables.b"]}'],
    ['b', pdf()],
    ['a', pdf()],
  ]);
  t.match(swapped.json, { errors: [{ message: /order the operation uses them/ }] }, 'parts out of order: refused, not buffered');
  const three = await form([
    ['operations', ops(TWO, { a: null, b: null })],
    ['map', '{"a":["variables.a"],"b":["variables.b"]}'],
    ['a', pdf()],
    ['b', pdf()],
    ['c', pdf()],
  ]);
  t.ok(three.status === 413 || three.code === 'PAYLOAD_TOO_LARGE', 'a part past maxFiles');
  const viaJson = await json({ query: UPLOAD, variables: { file: null } });
  t.equal(viaJson.status, 400, 'a null Upload in a JSON request');
  const accept = await fetch(url, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query: '{ nope }' }),
  });
  t.equal(accept.status, 200, 'Accept: application/json: request errors are 200 (GraphQL over HTTP, legacy)');
  t.match(accept.headers.get('content-type'), /^application\/json/);
  await accept.arrayBuffer();
});
