// FINDING (issue 12, 8): compressed request bodies passed the checks on their compressed bytes
// and reached the upstream encoded. A `Content-Encoding: gzip` PATCH was held to the PATCH size
// limit by its wire size (4 kB on the wire, 4 MiB decoded), and an encoded create or Bundle went
// by the attachment externalization and the Bundle scan unread. Every body with a
// Content-Encoding other than identity is now 415 UNSUPPORTED_ENCODING, before it is read, on
// every path; nothing reaches the upstream.
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, direct, outcome } from './helpers.js';

t.test('gzip PATCH, create, transaction and _search bodies are 415 and reach nothing; identity passes', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const docId = await direct(s, { resourceType: 'DocumentReference', status: 'current', content: [{ attachment: { title: 'a' } }] });
  const doc = (extra = '') => fetch(`${s.up.url}/DocumentReference/${docId}${extra}`).then((r) => r.json() as Promise<Record<string, any>>);
  const docsUpstream = async () =>
    ((await (await fetch(`${s.up.url}/DocumentReference?_count=100`)).json()) as { entry?: unknown[] }).entry?.length ?? 0;
  const send = (method: string, path: string, contentType: string, body: Buffer, headers: Record<string, string> = {}) =>
    fetch(`${s.gw.base}${path}`, { method, headers: { ...s.auth, 'content-type': contentType, ...headers }, body });

  // A patch that would put 4 MiB of attachment data past the PATCH limit (externalize.minBytes).
  const patch = Buffer.from(
    JSON.stringify([{ op: 'add', path: '/content/0/attachment/data', value: Buffer.alloc(3 * 1024 * 1024).toString('base64') }]),
  );
  const attachment = PDF(100_000).toString('base64');
  const created = Buffer.from(
    JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: attachment } }],
    }),
  );
  const transaction = Buffer.from(
    JSON.stringify({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ request: { method: 'POST', url: 'DocumentReference' }, resource: JSON.parse(created.toString()) as unknown }],
    }),
  );
  const search = Buffer.from('status=current&_count=1');
  const requests: [string, string, string, string, Buffer][] = [
    ['PATCH', `/DocumentReference/${docId}`, 'application/json-patch+json', 'JSON Patch', patch],
    ['POST', '/DocumentReference', 'application/fhir+json', 'create with an inline attachment', created],
    ['POST', '', 'application/fhir+json', 'transaction Bundle', transaction],
    ['POST', '/DocumentReference/_search', 'application/x-www-form-urlencoded', 'POST _search', search],
  ];

  const versionBefore = (await doc()).meta.versionId as string;
  const docsBefore = await docsUpstream();
  const upstreamSeen = s.up.requests.length;
  const gzipped = (b: Buffer) => gzipSync(b);
  t.ok(gzipped(patch).length < 8_192, 'sanity: the 3 MiB patch is a few kB gzipped');
  for (const [method, path, type, what, body] of requests) {
    const r = await send(method, path, type, gzipped(body), { 'content-encoding': 'gzip' });
    t.equal(r.headers.get('accept-encoding'), 'identity', `${what}: says what would do`);
    t.same(await outcome(r), [415, 'UNSUPPORTED_ENCODING'], `gzip ${what}`);
  }
  // Other codings, lists and spellings; and the other body paths (raw Binary, an operation).
  const others: [string, string, string, string, Buffer, string][] = [
    ['deflate', 'POST', '/DocumentReference', 'application/fhir+json', deflateSync(created), 'deflate'],
    ['br', 'POST', '/DocumentReference', 'application/fhir+json', brotliCompressSync(created), 'br'],
    ['GZIP', 'POST', '/DocumentReference', 'application/fhir+json', gzipped(created), 'GZIP'],
    ['a list ending in gzip', 'PUT', `/DocumentReference/${docId}`, 'application/fhir+json', gzipped(created), 'identity, gzip'],
    ['an unknown coding', 'POST', '/DocumentReference', 'application/fhir+json', created, 'x-anything'],
    ['an empty value', 'POST', '/DocumentReference', 'application/fhir+json', created, ''],
    ['raw Binary upload', 'POST', '/Binary', 'application/pdf', gzipped(PDF(1000)), 'gzip'],
    [
      '$binary-access-write',
      'POST',
      `/DocumentReference/${docId}/$binary-access-write?path=DocumentReference.content.attachment`,
      'application/pdf',
      gzipped(PDF(1000)),
      'gzip',
    ],
    ['an operation body', 'POST', '/DocumentReference/$validate', 'application/fhir+json', gzipped(created), 'gzip'],
    [
      'a batch Bundle',
      'POST',
      '',
      'application/fhir+json',
      gzipped(Buffer.from(transaction.toString().replace('transaction', 'batch'))),
      'gzip',
    ],
  ];
  for (const [what, method, path, type, body, coding] of others) {
    t.same(await outcome(send(method, path, type, body, { 'content-encoding': coding })), [415, 'UNSUPPORTED_ENCODING'], what);
  }
  t.equal(s.up.requests.length, upstreamSeen, 'no request reached the upstream');
  t.equal((await doc()).meta.versionId, versionBefore, 'the DocumentReference was not patched or replaced');
  t.equal(await docsUpstream(), docsBefore, 'no DocumentReference was created');
  t.same(s.gw.blobFiles(), [], 'nothing was stored');

  // Control: the very same bodies unencoded, or labelled identity, are what the gateway serves.
  const plain = await send('POST', '/DocumentReference', 'application/fhir+json', created, { 'content-encoding': 'identity' });
  t.equal(plain.status, 201, 'Content-Encoding: identity is accepted');
  await plain.arrayBuffer();
  t.equal(s.gw.blobFiles().length > 0, true, 'and its attachment went through the externalization');
  const searched = await send('POST', '/DocumentReference/_search', 'application/x-www-form-urlencoded', search);
  t.equal(searched.status, 200, 'POST _search unencoded');
  await searched.arrayBuffer();
});
