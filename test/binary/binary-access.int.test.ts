// $binary-access-write / $binary-access-read and raw Media through the running gateway, against Medplum's FHIR router.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { code, PDF, PNG, stack, type Stack } from '../helpers/binary-stack.js';
import { WAV } from '../helpers/content.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');
/** Creates a resource through the gateway (plain pass-through) and returns its id. */
async function create(s: Stack, resource: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${s.gw.base}/${resource.resourceType as string}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { id: string }).id;
}
const held = async (s: Stack, path: string) =>
  (await fetch(`${s.up.url}/${path}`, { headers: { accept: 'application/fhir+json' } })).json() as Promise<Record<string, any>>;
const puts = (s: Stack) => s.up.requests.filter((r) => r.method === 'PUT').length;
const docRef = {
  resourceType: 'DocumentReference',
  status: 'current',
  content: [
    { attachment: { contentType: 'application/pdf', title: 'report' } },
    { attachment: { contentType: 'image/png', title: 'photo' } },
  ],
};

t.test('write then read an attachment by path; the upstream holds size, hash and a reference, no data', async (t) => {
  const s = await stack(t);
  const id = await create(s, docRef);
  const pdf = PDF(250_000);
  const w = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content.attachment`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: pdf,
  });
  t.equal(w.status, 200, 'the updated resource comes back');
  const updated = (await w.json()) as Record<string, any>;
  t.equal(updated.meta.versionId, '2', 'a new version');

  const doc = await held(s, `DocumentReference/${id}`);
  const att = doc.content[0].attachment;
  t.equal(att.data, undefined, 'no data in the upstream');
  t.match(att, { contentType: 'application/pdf', size: pdf.length, hash: sha1(pdf), title: 'report' });
  const ref = findBlobRef(att._data.extension);
  t.ok(ref, 'a stable reference');
  t.same(doc.content[1].attachment, docRef.content[1].attachment, 'the other attachment is untouched');
  const meta = JSON.parse(
    await readFile(`${s.gw.blobDir}/${ref!.id.slice(0, 2)}/${ref!.id.slice(2, 4)}/${ref!.id}.json`, 'utf8'),
  ) as Record<string, unknown>;
  t.match(meta, { state: 'linked', owner: `DocumentReference/${id}`, contentType: 'application/pdf' });

  const r = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.equal(r.status, 200);
  t.equal(r.headers.get('content-type'), 'application/pdf');
  t.equal(r.headers.get('etag'), 'W/"2"');
  t.ok(Buffer.from(await r.arrayBuffer()).equals(pdf), 'the same bytes');
  const part = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content[0].attachment`, {
    headers: { ...s.auth, range: 'bytes=0-4' },
  });
  t.equal(part.status, 206);
  t.equal(await part.text(), '%PDF-');

  // The second attachment, by index; then the first version still reads as it was.
  const w2 = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content[1].attachment`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'image/png' },
    body: PNG,
  });
  t.equal(w2.status, 200);
  await w2.arrayBuffer();
  const png = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content[1].attachment`, {
    headers: s.auth,
  });
  t.equal(png.headers.get('content-type'), 'image/png');
  t.ok(Buffer.from(await png.arrayBuffer()).equals(PNG));
  const v2 = await fetch(
    `${s.gw.base}/DocumentReference/${id}/_history/2/$binary-access-read?path=DocumentReference.content[1].attachment`,
    { headers: s.auth },
  );
  t.equal(v2.status, 404, 'version 2 had no content in the second attachment');
  t.equal(await code(v2), 'NOT_FOUND');
});

t.test('If-Match: a stale version is refused before the body is stored', async (t) => {
  const s = await stack(t);
  const id = await create(s, docRef);
  const before = puts(s);
  const stale = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content.attachment`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf', 'if-match': 'W/"7"' },
    body: PDF(1000),
  });
  t.equal(stale.status, 412);
  t.equal(await code(stale), 'PRECONDITION_FAILED');
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  t.equal(puts(s), before, 'nothing written upstream');
  const ok = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content.attachment`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf', 'if-match': 'W/"1"' },
    body: PDF(1000),
  });
  t.equal(ok.status, 200, 'the current version is accepted');
  await ok.arrayBuffer();
});

t.test('refusals: type, path, method, scope, size; nothing stored, nothing written upstream', async (t) => {
  const s = await stack(t);
  const id = await create(s, docRef);
  const before = puts(s);
  const write = (path: string, body: Buffer, type: string, headers: Record<string, string> = s.auth) =>
    fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=${encodeURIComponent(path)}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': type },
      body,
    });
  const cases: [string, Promise<Response>, number, string][] = [
    [
      'type not allowed for DocumentReference',
      write('DocumentReference.content.attachment', PDF(10), 'video/mp4'),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    ['content is not the declared type', write('DocumentReference.content.attachment', PNG, 'application/pdf'), 415, 'UNSUPPORTED_MEDIA'],
    [
      'a FHIR resource instead of content',
      write('DocumentReference.content.attachment', Buffer.from('{}'), 'application/fhir+json'),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    ['no such attachment', write('DocumentReference.content[5].attachment', PDF(10), 'application/pdf'), 400, 'BAD_REQUEST'],
    ['path of another type', write('Media.content', PDF(10), 'application/pdf'), 400, 'BAD_REQUEST'],
    [
      'FHIRPath beyond simple paths',
      write("DocumentReference.content.where(attachment.title='x').attachment", PDF(10), 'application/pdf'),
      400,
      'BAD_REQUEST',
    ],
    [
      'no write scope',
      write('DocumentReference.content.attachment', PDF(10), 'application/pdf', await s.as('user/DocumentReference.rs')),
      403,
      'INSUFFICIENT_SCOPE',
    ],
  ];
  for (const [name, pending, status, expected] of cases) {
    const r = await pending;
    t.equal(r.status, status, name);
    t.equal(await code(r), expected, `${name}: ${expected}`);
  }
  const get = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.equal(get.status, 405, '$binary-access-write is a POST');
  await get.arrayBuffer();
  const noPath = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read`, { headers: s.auth });
  t.equal(noPath.status, 400, 'path is required');
  await noPath.arrayBuffer();
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  t.equal(puts(s), before, 'nothing written upstream');
});

t.test('raw Media: _output=data or an Accept equal to its type streams the content; other types get the resource', async (t) => {
  const s = await stack(t);
  const id = await create(s, { resourceType: 'Media', status: 'completed', content: { contentType: 'audio/wav' } });
  const wav = WAV(20_000);
  const w = await fetch(`${s.gw.base}/Media/${id}/$binary-access-write?path=Media.content`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'audio/wav' },
    body: wav,
  });
  t.equal(w.status, 200);
  await w.arrayBuffer();
  const out = await fetch(`${s.gw.base}/Media/${id}?_output=data`, { headers: s.auth });
  t.equal(out.status, 200);
  t.equal(out.headers.get('content-type'), 'audio/wav');
  t.ok(Buffer.from(await out.arrayBuffer()).equals(wav), '_output=data');
  const byAccept = await fetch(`${s.gw.base}/Media/${id}`, { headers: { ...s.auth, accept: 'audio/wav' } });
  t.equal(byAccept.headers.get('content-type'), 'audio/wav');
  t.ok(Buffer.from(await byAccept.arrayBuffer()).equals(wav), 'Accept equal to the content type');
  const other = await fetch(`${s.gw.base}/Media/${id}`, { headers: { ...s.auth, accept: 'audio/mpeg' } });
  t.match(other.headers.get('content-type'), /^application\/fhir\+json/, 'another type: the resource');
  t.equal(((await other.json()) as { resourceType: string }).resourceType, 'Media');
  const fhir = await fetch(`${s.gw.base}/Media/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  t.equal(((await fhir.json()) as { resourceType: string }).resourceType, 'Media', 'a FHIR read is plain pass-through');
  // Media allows audio/video/image/dicom only (the seed's default).
  const pdf = await fetch(`${s.gw.base}/Media/${id}/$binary-access-write?path=Media.content`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'image/png' },
    body: PNG,
  });
  t.equal(pdf.status, 415);
  await pdf.arrayBuffer();
});

t.test('Binary.data through the operations; inline attachments written around the gateway still read', async (t) => {
  const s = await stack(t);
  const created = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf', 'x-security-context': 'Patient/1' },
    body: PDF(100),
  });
  const bid = (created.headers.get('location') ?? '').split('/')[5];
  await created.arrayBuffer();
  const v2 = PDF(3000);
  const w = await fetch(`${s.gw.base}/Binary/${bid}/$binary-access-write?path=Binary.data`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: v2,
  });
  t.equal(w.status, 200);
  await w.arrayBuffer();
  const upstream = await held(s, `Binary/${bid}`);
  t.same(upstream.securityContext, { reference: 'Patient/1' }, 'securityContext kept');
  t.equal(upstream.size, undefined, 'a Binary gets no Attachment fields');
  const r = await fetch(`${s.gw.base}/Binary/${bid}/$binary-access-read?path=Binary.data`, { headers: s.auth });
  t.ok(Buffer.from(await r.arrayBuffer()).equals(v2));

  const content = PDF(500);
  const direct = await fetch(`${s.up.url}/DocumentReference`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: content.toString('base64') } }],
    }),
  });
  const did = ((await direct.json()) as { id: string }).id;
  const inline = await fetch(`${s.gw.base}/DocumentReference/${did}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.equal(inline.headers.get('content-type'), 'application/pdf');
  t.ok(Buffer.from(await inline.arrayBuffer()).equals(content), 'decoded from the inline data');
});

t.test('large inline attachments (held by the upstream above 1 MiB) stream through $binary-access-read and raw Media', async (t) => {
  const s = await stack(t);
  const pdf = PDF(2_500_000);
  const doc = await fetch(`${s.up.url}/DocumentReference`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [
        { attachment: { contentType: 'text/plain', data: Buffer.from('small').toString('base64') } },
        { attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } },
      ],
    }),
  });
  const did = ((await doc.json()) as { id: string }).id;
  const r = await fetch(`${s.gw.base}/DocumentReference/${did}/$binary-access-read?path=DocumentReference.content[1].attachment`, {
    headers: s.auth,
  });
  t.equal(r.status, 200);
  t.equal(r.headers.get('content-type'), 'application/pdf');
  t.ok(Buffer.from(await r.arrayBuffer()).equals(pdf), 'the second attachment, streamed');
  const wav = WAV(2_000_000);
  const media = await fetch(`${s.up.url}/Media`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Media',
      status: 'completed',
      content: { contentType: 'audio/wav', data: wav.toString('base64') },
    }),
  });
  const mid = ((await media.json()) as { id: string }).id;
  const raw = await fetch(`${s.gw.base}/Media/${mid}?_output=data`, { headers: s.auth });
  t.equal(raw.headers.get('content-type'), 'audio/wav');
  t.ok(Buffer.from(await raw.arrayBuffer()).equals(wav), 'raw Media from a large inline resource');
  const other = await fetch(`${s.gw.base}/Media/${mid}`, { headers: { ...s.auth, accept: 'audio/mpeg' } });
  const resource = (await other.json()) as { resourceType: string; content: { data: string } };
  t.equal(resource.resourceType, 'Media', 'another type: the resource, relayed whole');
  t.equal(resource.content.data.length, wav.toString('base64').length);
});
