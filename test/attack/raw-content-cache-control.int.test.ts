// FINDING (issue 12, 10): content served as itself (raw Binary, $binary-access-read, raw Media)
// had no Cache-Control, so a browser or a shared proxy could keep PHI and hand it out later
// (errors already said no-store). Now every such answer — 200, 206, HEAD, 304 — carries
// `content.cacheControl`: `no-store` unless the policy allows `private, max-age=N`.
import t from 'tap';
import { WAV } from '../helpers/content.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { direct, uploadGoverned } from './helpers.js';

/** Status and Cache-Control of an answer, its body read to the end. */
async function caching(p: Promise<Response>): Promise<[number, string | null]> {
  const r = await p;
  await r.arrayBuffer();
  return [r.status, r.headers.get('cache-control')];
}

/** The raw content answers of one gateway: each kind full, as a Range, as HEAD, and revalidated. */
async function rawAnswers(s: Stack): Promise<[string, Promise<Response>][]> {
  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${s.gw.base}/${path}`, { method, headers: { ...s.auth, ...headers } });

  const binary = await uploadGoverned(s, PDF(200_000), 'application/pdf');
  const etag = (await get(`Binary/${binary}`, {}, 'HEAD')).headers.get('etag')!;

  // A stored attachment (written through the gateway) and a small one the upstream holds inline.
  const doc = await direct(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf' } }],
  });
  const write = await fetch(`${s.gw.base}/DocumentReference/${doc}/$binary-access-write?path=DocumentReference.content.attachment`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: PDF(200_000),
  });
  if (write.status !== 200) throw new Error(`$binary-access-write: ${write.status}`);
  await write.arrayBuffer();
  const small = PDF(500);
  const inlineDoc = await direct(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: small.toString('base64') } }],
  });
  const read = (id: string) => `DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`;

  const media = await direct(s, { resourceType: 'Media', status: 'completed', content: { contentType: 'audio/wav' } });
  const mediaWrite = await fetch(`${s.gw.base}/Media/${media}/$binary-access-write?path=Media.content`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'audio/wav' },
    body: WAV(20_000),
  });
  if (mediaWrite.status !== 200) throw new Error(`Media write: ${mediaWrite.status}`);
  await mediaWrite.arrayBuffer();

  return [
    ['Binary raw', get(`Binary/${binary}`)],
    ['Binary raw, Range', get(`Binary/${binary}`, { range: 'bytes=0-99' })],
    ['Binary raw, HEAD', get(`Binary/${binary}`, {}, 'HEAD')],
    ['Binary raw, If-None-Match', get(`Binary/${binary}`, { 'if-none-match': etag })],
    ['Binary as FHIR JSON (the same content, base64)', get(`Binary/${binary}`, { accept: 'application/fhir+json' })],
    ['$binary-access-read', get(read(doc))],
    ['$binary-access-read, Range', get(read(doc), { range: 'bytes=100-' })],
    ['$binary-access-read, HEAD', get(read(doc), {}, 'HEAD')],
    ['$binary-access-read, If-None-Match', get(read(doc), { 'if-none-match': 'W/"2"' })],
    ['$binary-access-read of inline data', get(read(inlineDoc))],
    ['$binary-access-read of inline data, Range', get(read(inlineDoc), { range: 'bytes=0-9' })],
    ['raw Media', get(`Media/${media}?_output=data`)],
    ['raw Media, Range', get(`Media/${media}?_output=data`, { range: 'bytes=-100' })],
    ['raw Media, HEAD', get(`Media/${media}?_output=data`, {}, 'HEAD')],
    ['raw Media by Accept', get(`Media/${media}`, { accept: 'audio/wav' })],
  ];
}

const statusOf = (what: string) => (/Range/.test(what) ? 206 : /If-None-Match/.test(what) ? 304 : 200);

t.test('by default every raw content answer is no-store: 200, 206, HEAD and 304 alike', async (t) => {
  const s = await stack(t);
  for (const [what, answer] of await rawAnswers(s)) t.same(await caching(answer), [statusOf(what), 'no-store'], what);
  // Refusals were no-store already; a Range outside the content is one.
  const id = await uploadGoverned(s, PDF(1000), 'application/pdf');
  t.same(await caching(fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=99999-' } })), [416, 'no-store']);
});

t.test('content.cacheControl: private, max-age=N lets the client alone keep content for that long', async (t) => {
  const s = await stack(t, { content: { cacheControl: 'private, max-age=300' } });
  for (const [what, answer] of await rawAnswers(s)) t.same(await caching(answer), [statusOf(what), 'private, max-age=300'], what);
});
