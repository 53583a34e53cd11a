// The rewrite engine's write direction over a real filesystem store: what goes out, what is stored, what is refused.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t, { type Test } from 'tap';
import { parseAttachmentPath } from '../../src/fhir/attachment-path.js';
import { BLOB_EXTENSION_URL, findBlobRef } from '../../src/fhir/blob-reference.js';
import { Externalizer, type ExternalizeOptions } from '../../src/rewrite/externalize.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, PNG } from '../helpers/content.js';

const ALLOW: Record<string, string[]> = {
  DocumentReference: ['application/pdf', 'text/plain', 'image/*'],
  Binary: ['application/pdf', 'image/*', 'text/plain'],
};

async function setup(t: Test, opts: Partial<ExternalizeOptions> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-ext-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: dir });
  const files = () => (readdirSync(dir, { recursive: true }) as string[]).filter((p) => statSync(join(dir, p)).isFile());
  /** Runs the engine over `body` cut into pieces of `piece` bytes; resolves with the output text and the engine. */
  const run = async (body: string | Buffer, piece = 65536) => {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const pieces: Buffer[] = [];
    for (let i = 0; i < buf.length; i += piece) pieces.push(buf.subarray(i, i + piece));
    const ext = new Externalizer({
      store,
      minBytes: 1024,
      maxBytes: 64 * 1024 * 1024,
      allowedTypes: (rt) => ALLOW[rt] ?? ALLOW['Binary'],
      ...opts,
    });
    const out: Buffer[] = [];
    await pipeline(Readable.from(pieces), ext, async function* (src) {
      for await (const c of src) out.push(Buffer.from(c as Buffer));
    });
    return { text: Buffer.concat(out).toString('utf8'), ext };
  };
  const content = async (id: string) => {
    const { body } = await store.get(id);
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };
  return { store, files, run, content };
}

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

t.test('a FHIR Binary: data goes to the store, the resource keeps a reference', async (t) => {
  const s = await setup(t);
  const pdf = PDF(200_000);
  const { text, ext } = await s.run(
    JSON.stringify({
      resourceType: 'Binary',
      contentType: 'application/pdf',
      securityContext: { reference: 'Patient/1' },
      data: pdf.toString('base64'),
    }),
    4096,
  );
  const out = JSON.parse(text);
  t.equal(out.data, undefined, 'no data left inline');
  t.same(out.securityContext, { reference: 'Patient/1' });
  const ref = findBlobRef(out._data?.extension);
  t.ok(ref, 'the reference sits on _data');
  t.equal(ref!.sha256, sha256(pdf));
  t.ok((await s.content(ref!.id)).equals(pdf), 'the store holds the exact bytes');
  t.equal(ext.blobs.length, 1);
  t.match(ext.blobs[0], {
    contentType: 'application/pdf',
    resourceType: 'Binary',
    info: { id: ref!.id, size: pdf.length, state: 'pending' },
  });
  t.equal(out.size, undefined, 'Binary gets no Attachment fields');
});

t.test('an Attachment whose contentType comes after its data; size and hash are filled in', async (t) => {
  const s = await setup(t);
  const pdf = PDF(50_000);
  const doc = `{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"data":"${pdf.toString('base64')}","title":"scan","contentType":"application/pdf"}}]}`;
  const { text, ext } = await s.run(doc, 777);
  const att = JSON.parse(text).content[0].attachment;
  t.equal(att.data, undefined);
  t.equal(att.size, pdf.length);
  t.equal(att.hash, sha1(pdf), 'R4 Attachment.hash: base64 SHA-1');
  t.equal(att.title, 'scan');
  t.equal(att.contentType, 'application/pdf');
  t.equal(findBlobRef(att._data.extension)!.id, ext.blobs[0].info.id);
  t.equal(ext.blobs[0].resourceType, 'DocumentReference');
});

t.test('small attachments stay inline (still checked); SampledData and Signature are not attachments', async (t) => {
  const s = await setup(t);
  const ecg = Array.from({ length: 3000 }, (_, i) => String(i % 97)).join(' ');
  const sig = randomBytes(3000).toString('base64');
  const doc = {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    valueSampledData: { origin: { value: 0 }, period: 1, dimensions: 1, data: ecg },
    extension: [{ url: 'http://example.org/photo', valueAttachment: { contentType: 'image/png', data: PNG.toString('base64') } }],
    contained: [
      {
        resourceType: 'Provenance',
        target: [{ reference: 'Observation/1' }],
        recorded: '2020-01-01T00:00:00Z',
        agent: [],
        signature: [{ type: [], when: '2020-01-01T00:00:00Z', who: {}, data: sig }],
      },
    ],
  };
  const { text, ext } = await s.run(JSON.stringify(doc), 100);
  t.same(JSON.parse(text), doc, 'nothing changed');
  t.equal(ext.blobs.length, 0);
  t.same(s.files(), [], 'nothing stored');
  // The inline PNG was still checked: declared as PDF, it is refused.
  const bad = structuredClone(doc);
  bad.extension[0].valueAttachment.contentType = 'application/pdf';
  await t.rejects(s.run(JSON.stringify(bad)), { code: 'UNSUPPORTED_MEDIA', message: /image\/png, declared as application\/pdf/ });
});

t.test('identical output whatever the chunk boundaries', async (t) => {
  const s = await setup(t, { minBytes: 0 });
  const doc = JSON.stringify({
    resourceType: 'DocumentReference',
    status: 'current',
    description: 'é ✓ 😀 "quoted" \\ \n',
    content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('héllo wörld 😀\n'.repeat(50)).toString('base64') } }],
  });
  const outputs = new Set<string>();
  for (const piece of [1, 2, 3, 7, 64, 1 << 16]) {
    const { text } = await s.run(doc, piece);
    const parsed = JSON.parse(text);
    delete parsed.content[0].attachment._data;
    outputs.add(JSON.stringify(parsed));
  }
  t.equal(outputs.size, 1, 'every split gives the same resource');
  const one = JSON.parse([...outputs][0]);
  t.equal(one.description, 'é ✓ 😀 "quoted" \\ \n', 'escapes and surrogate pairs survive');
});

t.test('Bundle entries and contained resources: each attachment checked against its own resource type', async (t) => {
  const s = await setup(t);
  const pdf = PDF(5000);
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        request: { method: 'POST', url: 'Binary' },
        resource: { contentType: 'application/pdf', data: pdf.toString('base64'), resourceType: 'Binary' },
      },
      {
        request: { method: 'POST', url: 'DocumentReference' },
        resource: {
          resourceType: 'DocumentReference',
          status: 'current',
          content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
        },
      },
    ],
  };
  const { text, ext } = await s.run(JSON.stringify(bundle), 333);
  const out = JSON.parse(text);
  t.same(
    ext.blobs.map((b) => b.resourceType),
    ['Binary', 'DocumentReference'],
    'resourceType known even when it comes last',
  );
  t.equal(out.entry[0].resource.data, undefined);
  t.equal(out.entry[1].resource.content[0].attachment.size, pdf.length);
  t.equal(s.files().length, 4, 'two blobs, each with its metadata');
});

t.test('refusals leave nothing in the store', async (t) => {
  const s = await setup(t, { minBytes: 0 });
  const pdf = PDF(300_000).toString('base64');
  const cases: [string, string, RegExp][] = [
    [
      'type not allowed for the resource',
      `{"content":[{"attachment":{"contentType":"text/csv","data":"${Buffer.from('a,b\n1,2\n'.repeat(9000)).toString('base64')}"}}],"resourceType":"DocumentReference"}`,
      /text\/csv is not allowed for DocumentReference/,
    ],
    [
      'sniffed type differs',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"data":"${pdf}","contentType":"image/png"}}]}`,
      /application\/pdf, declared as image\/png/,
    ],
    ['no contentType', `{"resourceType":"DocumentReference","content":[{"attachment":{"data":"${pdf}"}}]}`, /needs a valid contentType/],
    [
      'not base64',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"application/pdf","data":"${pdf.slice(0, 200_000)}*${pdf.slice(200_000)}"}}]}`,
      /not valid base64/,
    ],
    [
      'truncated base64',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"application/pdf","data":"${pdf}A"}}]}`,
      /truncated/,
    ],
    [
      'duplicate data',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"application/pdf","data":"${pdf}","data":"QUFB"}}]}`,
      /duplicate member "data"/,
    ],
    [
      'wrong hash',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"hash":"AAAA","contentType":"application/pdf","data":"${pdf}"}}]}`,
      /hash does not match/,
    ],
    [
      'wrong size',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"application/pdf","data":"${pdf}","size":12}}]}`,
      /size says 12/,
    ],
    [
      'a second attachment fails after the first was stored',
      `{"resourceType":"DocumentReference","content":[{"attachment":{"contentType":"application/pdf","data":"${pdf}"}},{"attachment":{"contentType":"text/plain","data":"${Buffer.from([0, 1, 2]).toString('base64')}"}}]}`,
      /not valid UTF-8 without NUL/,
    ],
    ['root data outside Binary', `{"resourceType":"Patient","contentType":"application/pdf","data":"${pdf}"}`, /only valid in Binary/],
    ['truncated JSON', `{"resourceType":"Binary","contentType":"application/pdf","data":"${pdf}"`, /not valid JSON/],
    [
      'a client-written blob reference',
      `{"resourceType":"Binary","contentType":"application/pdf","_data":{"extension":[{"url":"${BLOB_EXTENSION_URL}","extension":[]}]}}`,
      /written by the gateway only/,
    ],
  ];
  for (const [name, body, message] of cases) {
    await t.rejects(s.run(body, 10_000), { message }, name);
    t.same(s.files(), [], `${name}: nothing stored`);
  }
});

t.test('content is stored only where $binary-access-read can name it: elsewhere refused, nothing stored', async (t) => {
  const s = await setup(t, { minBytes: 0 });
  const pdf = PDF(5_000).toString('base64');
  const att = { contentType: 'application/pdf', data: pdf };
  // 9 steps and a primitive's extension: stored (the grammar takes them) and named by that path.
  let deep: Record<string, unknown> = { valueAttachment: att };
  for (let i = 0; i < 4; i++) deep = { linkId: 'x', answer: [{ item: [deep] }] };
  const ok = [
    { resourceType: 'QuestionnaireResponse', status: 'completed', item: [deep] },
    { resourceType: 'DocumentReference', _status: { extension: [{ url: 'urn:x', valueAttachment: att }] } },
  ];
  for (const body of ok) {
    const { ext } = await s.run(JSON.stringify(body));
    t.equal(ext.blobs.length, 1, `${body.resourceType}: stored`);
    await s.store.delete(ext.blobs[0].info.id);
  }
  t.ok(
    parseAttachmentPath(
      'QuestionnaireResponse.item[0].answer[0].item[0].answer[0].item[0].answer[0].item[0].answer[0].item[0].valueAttachment',
      'QuestionnaireResponse',
    ),
  );
  let tooDeep: Record<string, unknown> = att;
  for (let i = 0; i < 65; i++) tooDeep = { part: tooDeep };
  const refused: [string, unknown][] = [
    ['an element name no path takes', { resourceType: 'DocumentReference', content: [{ 'my-attachment': att }] }],
    ['a member named like two steps', { resourceType: 'DocumentReference', 'content[0].attachment': att }],
    ['an array in an array', { resourceType: 'DocumentReference', extension: [[att]] }],
    ['deeper than 64 steps', { resourceType: 'DocumentReference', extension: [tooDeep] }],
    [
      'in a Bundle, counted from the Bundle',
      { resourceType: 'Bundle', type: 'document', entry: [{ resource: { resourceType: 'DocumentReference', content: [{ 'a-b': att }] } }] },
    ],
  ];
  for (const [name, body] of refused) {
    await t.rejects(s.run(JSON.stringify(body)), { code: 'BAD_REQUEST', message: /path \$binary-access-read can name/ }, name);
    t.same(s.files(), [], `${name}: nothing stored`);
  }
  t.throws(() => parseAttachmentPath(`DocumentReference${'.part'.repeat(65)}`, 'DocumentReference'), { code: 'BAD_REQUEST' });
  // Below a Binary, wherever the data sits and whenever its type comes: refused, nothing stored.
  const binaries = [
    {
      resourceType: 'Binary',
      contentType: 'text/plain',
      contained: [{ resourceType: 'DocumentReference', content: [{ attachment: att }] }],
    },
    {
      contained: [{ resourceType: 'Binary', contentType: 'application/pdf', data: pdf }],
      contentType: 'text/plain',
      resourceType: 'Binary',
    },
    { resourceType: 'Binary', meta: { extension: [{ url: 'urn:x', valueAttachment: att }] } },
  ];
  for (const body of binaries) {
    await t.rejects(
      s.run(JSON.stringify(body)),
      { code: 'BAD_REQUEST', message: /only in Binary\.data/ },
      JSON.stringify(body).slice(0, 60),
    );
    t.same(s.files(), [], 'nothing stored');
  }
});

t.test('past maxBytes: 413 and nothing stored', async (t) => {
  const s = await setup(t, { minBytes: 0, maxBytes: 100_000 });
  await t.rejects(
    s.run(JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: PDF(150_000).toString('base64') })),
    { code: 'PAYLOAD_TOO_LARGE' },
  );
  t.same(s.files(), []);
});
