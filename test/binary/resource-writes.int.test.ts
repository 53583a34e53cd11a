// Create/update of any resource type through the running gateway: attachment data is externalized
// (or kept inline under the threshold), checked, and linked; PATCH and XML bodies are bounded.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { code, PDF, PNG, stack, type Stack } from '../helpers/binary-stack.js';
import { WAV } from '../helpers/content.js';

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');
const send = (s: Stack, method: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.gw.base}/${path}`, {
    method,
    headers: { ...s.auth, 'content-type': 'application/fhir+json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
const held = async (s: Stack, path: string) =>
  (await fetch(`${s.up.url}/${path}`, { headers: { accept: 'application/fhir+json' } })).json() as Promise<Record<string, any>>;
const writes = (s: Stack) => s.up.requests.filter((r) => r.method === 'POST' || r.method === 'PUT').length;
const meta = async (s: Stack, id: string) =>
  JSON.parse(await readFile(`${s.gw.blobDir}/${id.slice(0, 2)}/${id.slice(2, 4)}/${id}.json`, 'utf8')) as Record<string, unknown>;

t.test('create: large attachment data goes to the store, small stays inline; the upstream never holds the large one', async (t) => {
  const s = await stack(t);
  const big = PDF(200_000);
  const small = Buffer.from('a short note\n');
  const r = await send(s, 'POST', 'DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', data: big.toString('base64'), title: 'scan' } },
      { attachment: { contentType: 'text/plain', data: small.toString('base64') } },
    ],
  });
  t.equal(r.status, 201);
  const id = ((await r.json()) as { id: string }).id;
  const doc = await held(s, `DocumentReference/${id}`);
  const [a, b] = [doc.content[0].attachment, doc.content[1].attachment];
  t.equal(a.data, undefined, 'no large data upstream');
  t.match(a, { contentType: 'application/pdf', size: big.length, hash: sha1(big), title: 'scan' });
  const ref = findBlobRef(a._data.extension)!;
  t.match(await meta(s, ref.id), { state: 'linked', owner: `DocumentReference/${id}`, contentType: 'application/pdf', size: big.length });
  t.equal(b.data, small.toString('base64'), 'data under externalize.minBytes stays inline');
  const back = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content[0].attachment`, {
    headers: s.auth,
  });
  t.ok(Buffer.from(await back.arrayBuffer()).equals(big), 'readable through $binary-access-read');
});

t.test('any resource type: Observation.valueAttachment, Patient.photo[], attachments in contained resources', async (t) => {
  const s = await stack(t, { externalize: { minBytes: 50 } });
  const png = PNG;
  const pdf = PDF(5000);
  const obs = await send(s, 'POST', 'Observation', {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    valueAttachment: { contentType: 'application/pdf', data: pdf.toString('base64') },
    contained: [
      { resourceType: 'Media', id: 'm', status: 'completed', content: { contentType: 'audio/wav', data: WAV(3000).toString('base64') } },
    ],
  });
  t.equal(obs.status, 201, 'Observation with a contained Media');
  const oid = ((await obs.json()) as { id: string }).id;
  const o = await held(s, `Observation/${oid}`);
  t.equal(o.valueAttachment.data, undefined);
  t.equal(o.valueAttachment.size, pdf.length);
  t.equal(o.contained[0].content.data, undefined, 'the contained Media too');
  const png2 = await send(s, 'POST', 'Observation', {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    contained: [
      { resourceType: 'Media', id: 'm', status: 'completed', content: { contentType: 'image/png', data: png.toString('base64') } },
    ],
  });
  t.equal(png2.status, 415, "a contained Media is checked against Media's allow-list, not its container's");
  await png2.arrayBuffer();
  const pat = await send(s, 'POST', 'Patient', {
    resourceType: 'Patient',
    photo: [
      { contentType: 'image/png', data: png.toString('base64') },
      { contentType: 'image/png', data: png.toString('base64') },
    ],
  });
  t.equal(pat.status, 201);
  const p = await held(s, `Patient/${((await pat.json()) as { id: string }).id}`);
  t.same(
    p.photo.map((x: { data?: string; size: number }) => [x.data, x.size]),
    [
      [undefined, png.length],
      [undefined, png.length],
    ],
    'every photo',
  );
});

t.test('refusals: mismatch, type not allowed, wrong resource type, XML; nothing stored, nothing written upstream', async (t) => {
  const s = await stack(t);
  const before = writes(s);
  const pdf = PDF(100_000).toString('base64');
  const cases: [string, Promise<Response>, number, string][] = [
    [
      'PNG declared as PDF',
      send(s, 'POST', 'DocumentReference', {
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', data: PNG.toString('base64') } }],
      }),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    [
      'video in a DocumentReference',
      send(s, 'POST', 'DocumentReference', {
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'text/csv', data: Buffer.from('a,b\n'.repeat(30000)).toString('base64') } }],
      }),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    [
      'a Patient posted to DocumentReference',
      send(s, 'POST', 'DocumentReference', { resourceType: 'Patient', photo: [{ contentType: 'application/pdf', data: pdf }] }),
      400,
      'BAD_REQUEST',
    ],
    [
      'a client-written blob reference',
      send(s, 'POST', 'DocumentReference', {
        resourceType: 'DocumentReference',
        status: 'current',
        content: [
          {
            attachment: {
              contentType: 'application/pdf',
              _data: {
                extension: [
                  {
                    url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference',
                    extension: [{ url: 'id', valueString: 'x' }],
                  },
                ],
              },
            },
          },
        ],
      }),
      400,
      'BAD_REQUEST',
    ],
    [
      'FHIR XML body',
      send(s, 'POST', 'Patient', '<Patient xmlns="http://hl7.org/fhir"/>', { 'content-type': 'application/fhir+xml' }),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    ['not FHIR at all', send(s, 'POST', 'Patient', 'hello', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA'],
  ];
  for (const [name, pending, status, expected] of cases) {
    const r = await pending;
    t.equal(r.status, status, name);
    t.equal(await code(r), expected, `${name}: ${expected}`);
  }
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  t.equal(writes(s), before, 'nothing written upstream');
});

t.test('update: a new blob per version; a refused update (stale If-Match) removes its blob', async (t) => {
  const s = await stack(t);
  const doc = (data: Buffer) => ({
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: data.toString('base64') } }],
  });
  const created = await send(s, 'POST', 'DocumentReference', doc(PDF(100_000)));
  const id = ((await created.json()) as { id: string }).id;
  const blobs = () => s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length;
  const put = await send(s, 'PUT', `DocumentReference/${id}`, { ...doc(PDF(120_000)), id }, { 'if-match': 'W/"1"' });
  t.equal(put.status, 200);
  await put.arrayBuffer();
  t.equal(blobs(), 2, 'each version keeps its own blob');
  const stale = await send(s, 'PUT', `DocumentReference/${id}`, { ...doc(PDF(130_000)), id }, { 'if-match': 'W/"1"' });
  t.ok(stale.status === 409 || stale.status === 412, `the upstream refuses a stale version (${stale.status})`);
  await stale.arrayBuffer();
  t.equal(blobs(), 2, 'the refused blob is gone');
});

t.test('PATCH: small patches pass; a body over externalize.minBytes is refused (declared or streamed)', async (t) => {
  const s = await stack(t, { externalize: { minBytes: 1000 } });
  const id = ((await (await send(s, 'POST', 'Patient', { resourceType: 'Patient', active: false })).json()) as { id: string }).id;
  const ok = await send(s, 'PATCH', `Patient/${id}`, [{ op: 'replace', path: '/active', value: true }], {
    'content-type': 'application/json-patch+json',
  });
  t.equal(ok.status, 200, 'a small JSON Patch goes through');
  t.equal(((await ok.json()) as { active: boolean }).active, true);
  const big = [{ op: 'add', path: '/photo', value: [{ contentType: 'image/png', data: 'A'.repeat(4000) }] }];
  const r = await send(s, 'PATCH', `Patient/${id}`, big, { 'content-type': 'application/json-patch+json' });
  t.equal(r.status, 413);
  t.equal(await code(r), 'PAYLOAD_TOO_LARGE');
  const streamed = await fetch(`${s.gw.base}/Patient/${id}`, {
    method: 'PATCH',
    headers: { ...s.auth, 'content-type': 'application/json-patch+json' },
    body: new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(JSON.stringify(big)));
        c.close();
      },
    }),
    duplex: 'half',
  });
  t.equal(streamed.status, 413, 'chunked too');
  await streamed.arrayBuffer();
  t.equal((await held(s, `Patient/${id}`)).photo, undefined, 'the upstream never got the data');
});
