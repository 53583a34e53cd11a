// The rewrite engine's read direction over a real filesystem store: inflation within the budget,
// links past it, inline data the upstream holds, owners, Bundles, URL rewriting.
import { createHash } from 'node:crypto';
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { CONTENT_URL_EXTENSION } from '../../src/rewrite/inflate.js';
import { CONTENT_SHA256_EXTENSION } from '../../src/fhir/content-link.js';
import { engine, PUBLIC, UPSTREAM } from '../helpers/engine.js';
import { PDF } from '../helpers/content.js';

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('base64');
const b64 = (b: Buffer) => b.toString('base64');
// The way Medplum writes resources: id and meta after the content.
const docRef = (id: string, ...datas: Buffer[]) => ({
  resourceType: 'DocumentReference',
  status: 'current',
  content: datas.map((d, i) => ({ attachment: { contentType: 'application/pdf', title: `part ${i}`, data: b64(d) } })),
  id,
  meta: { versionId: '1' },
});

/** What a client wrote, with the fields externalizing adds (size, hash). */
const withSizes = (doc: ReturnType<typeof docRef>, datas: Buffer[]) => ({
  ...doc,
  content: doc.content.map((c, i) => ({ attachment: { ...c.attachment, size: datas[i].length, hash: sha1(datas[i]) } })),
});

t.test('stored content comes back inline, exactly, with size and hash; our reference never leaves', async (t) => {
  const e = engine(t);
  const parts = [PDF(100_000), PDF(3000), PDF(70_000)];
  const doc = docRef('d1', ...parts);
  const { text: held, ext } = await e.externalize(JSON.stringify(doc));
  await e.link(ext, 'DocumentReference/d1');
  t.equal(ext.blobs.length, 3);
  const { text, report } = await e.inflate(held, {}, 4096);
  t.same(JSON.parse(text), withSizes(doc, parts));
  t.notOk(text.includes(BLOB_EXTENSION_URL), 'no reference in the output');
  t.same(report, { inflated: 3, linked: 0, bytes: parts.reduce((n, p) => n + p.length, 0) });
});

t.test('the budget: attachments in document order while they fit, a $binary-access-read link for the rest', async (t) => {
  const e = engine(t);
  const parts = [PDF(40_000), PDF(50_000), PDF(5000)];
  const { text: held, ext } = await e.externalize(JSON.stringify(docRef('d2', ...parts)));
  await e.link(ext, 'DocumentReference/d2');
  const { text, report } = await e.inflate(held, { maxBytes: 60_000 });
  const out = JSON.parse(text);
  t.ok(Buffer.from(out.content[0].attachment.data, 'base64').equals(parts[0]), 'the first fits');
  t.equal(out.content[1].attachment.data, undefined, 'the second would exceed the budget');
  t.equal(
    out.content[1].attachment.url,
    `${PUBLIC}/DocumentReference/d2/$binary-access-read?path=${encodeURIComponent('DocumentReference.content[1].attachment')}`,
  );
  t.match(
    out.content[1].attachment,
    { size: parts[1].length, hash: sha1(parts[1]) },
    'size and hash stay, so a client can decide to follow',
  );
  t.ok(Buffer.from(out.content[2].attachment.data, 'base64').equals(parts[2]), 'a later small one still fits');
  t.equal(report.bytes, parts[0].length + parts[2].length);
  t.ok(report.bytes <= 60_000);
});

t.test('inflation off: every stored attachment gets a link; one that has a url keeps it, its link on _data', async (t) => {
  const e = engine(t);
  const pdf = PDF(20_000);
  const doc = {
    resourceType: 'Media',
    status: 'completed',
    content: { contentType: 'application/pdf', url: 'https://elsewhere.example/x.pdf', data: b64(pdf) },
    contained: [
      {
        resourceType: 'DocumentReference',
        id: 'c',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', data: b64(pdf) } }],
      },
    ],
    id: 'm1',
  };
  const { text: held, ext } = await e.externalize(JSON.stringify(doc));
  await e.link(ext, 'Media/m1');
  const { text, report } = await e.inflate(held, { inflate: false });
  const out = JSON.parse(text);
  t.equal(out.content.url, 'https://elsewhere.example/x.pdf', 'not overwritten');
  t.equal(out.content.data, undefined);
  t.same(
    out.content._data,
    {
      extension: [
        { url: CONTENT_URL_EXTENSION, valueUrl: `${PUBLIC}/Media/m1/$binary-access-read?path=Media.content` },
        { url: CONTENT_SHA256_EXTENSION, valueString: createHash('sha256').update(pdf).digest('hex') },
      ],
    },
    'the stored content is still named: a client that sends this back keeps it',
  );
  t.equal(
    out.contained[0].content[0].attachment.url,
    `${PUBLIC}/Media/m1/$binary-access-read?path=${encodeURIComponent('Media.contained[0].content[0].attachment')}`,
    'contained: linked through the container, its owner',
  );
  t.equal(report.inflated, 0);
  t.equal(report.linked, 2);
});

t.test('inline data the upstream holds: sent in place within the budget, replaced by a link past it', async (t) => {
  const e = engine(t);
  const small = PDF(2000);
  const large = PDF(400_000);
  const doc = {
    resourceType: 'DocumentReference',
    id: 'i1',
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', data: b64(small) } },
      { attachment: { contentType: 'application/pdf', data: b64(large) } },
    ],
  };
  const within = await e.inflate(JSON.stringify(doc), {}, 1000);
  t.equal(within.text, JSON.stringify(doc), 'within an unlimited budget: unchanged, byte for byte');
  const capped = await e.inflate(JSON.stringify(doc), { maxBytes: 100_000 }, 7);
  const out = JSON.parse(capped.text);
  t.equal(out.content[0].attachment.data, b64(small));
  t.equal(out.content[1].attachment.data, undefined, 'never more than the budget');
  t.match(
    out.content[1].attachment.url,
    /\/DocumentReference\/i1\/\$binary-access-read\?path=DocumentReference.content%5B1%5D.attachment$/,
  );
  t.same(e.spooled(), [], 'spill files are gone (400 KB went through one)');
  const none = await e.inflate(JSON.stringify(doc), { maxBytes: 0 });
  t.same(
    JSON.parse(none.text).content.map((c: { attachment: { data?: string } }) => c.attachment.data),
    [undefined, undefined],
    'a zero budget sends no attachment bytes',
  );
});

t.test('a blob is served only to the resource it was written for', async (t) => {
  const e = engine(t);
  const pdf = PDF(10_000);
  const { text: held, ext } = await e.externalize(JSON.stringify(docRef('mine', pdf)));
  await e.link(ext, 'DocumentReference/mine');
  // The same reference, planted in another resource (written to the upstream around the gateway).
  const planted = held.replace('"id":"mine"', '"id":"theirs"');
  const { text, warnings } = await e.inflate(planted);
  const out = JSON.parse(text);
  t.equal(out.content[0].attachment.data, undefined, 'not served');
  t.match(warnings, [/not written for this resource/]);
  const pending = await e.externalize(JSON.stringify(docRef('p', pdf)));
  const unsettled = await e.inflate(pending.text);
  t.equal(JSON.parse(unsettled.text).content[0].attachment.data, undefined, 'a pending blob (upstream never accepted) is not served');
  t.match(unsettled.warnings, [/unsettled/]);
  const noId = await e.inflate(held.replace(',"id":"mine"', ''));
  t.equal(JSON.parse(noId.text).content[0].attachment.data, undefined, 'no id: no owner to check against');
});

t.test('a search Bundle: each entry owns its attachments; fullUrl and link move to the public base', async (t) => {
  const e = engine(t);
  const a = PDF(30_000);
  const b = PDF(30_000);
  const ra = await e.externalize(JSON.stringify(docRef('a', a)));
  await e.link(ra.ext, 'DocumentReference/a');
  const rb = await e.externalize(JSON.stringify(docRef('b', b)));
  await e.link(rb.ext, 'DocumentReference/b');
  const bundle = `{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"${UPSTREAM}/DocumentReference?_count=2"},{"relation":"next","url":"http://other.example/x"}],"entry":[{"fullUrl":"${UPSTREAM}/DocumentReference/a","resource":${ra.text},"search":{"mode":"match"}},{"fullUrl":"${UPSTREAM}/DocumentReference/b","resource":${rb.text}}],"total":2}`;
  const { text, report } = await e.inflate(bundle, { maxBytes: 40_000 }, 3);
  const out = JSON.parse(text);
  t.equal(out.link[0].url, `${PUBLIC}/DocumentReference?_count=2`);
  t.equal(out.link[1].url, 'http://other.example/x', 'only the upstream base is rewritten');
  t.same(
    out.entry.map((x: { fullUrl: string }) => x.fullUrl),
    [`${PUBLIC}/DocumentReference/a`, `${PUBLIC}/DocumentReference/b`],
  );
  t.ok(Buffer.from(out.entry[0].resource.content[0].attachment.data, 'base64').equals(a));
  t.equal(
    out.entry[1].resource.content[0].attachment.url,
    `${PUBLIC}/DocumentReference/b/$binary-access-read?path=${encodeURIComponent('DocumentReference.content[0].attachment')}`,
    "the second entry's link names its own resource",
  );
  t.same(report, { inflated: 1, linked: 1, bytes: a.length });
  t.equal(out.total, 2);
});

t.test('Binary in a Bundle: inline within the budget, else a content-url extension on _data', async (t) => {
  const e = engine(t);
  const pdf = PDF(50_000);
  const r = await e.externalize(JSON.stringify({ resourceType: 'Binary', id: 'bin', contentType: 'application/pdf', data: b64(pdf) }), {
    binaryMinBytes: 0,
  });
  await e.link(r.ext, 'Binary/bin');
  const bundle = `{"resourceType":"Bundle","type":"history","entry":[{"resource":${r.text}}]}`;
  const full = JSON.parse((await e.inflate(bundle)).text);
  t.ok(Buffer.from(full.entry[0].resource.data, 'base64').equals(pdf));
  t.equal(full.entry[0].resource._data, undefined);
  const capped = JSON.parse((await e.inflate(bundle, { maxBytes: 1000 })).text);
  t.equal(capped.entry[0].resource.data, undefined);
  t.same(capped.entry[0].resource._data, {
    extension: [
      { url: CONTENT_URL_EXTENSION, valueUrl: `${PUBLIC}/Binary/bin` },
      // Which content the link names: a Binary sent back with it takes this content, no other.
      { url: CONTENT_SHA256_EXTENSION, valueString: createHash('sha256').update(pdf).digest('hex') },
    ],
  });
});

t.test('SampledData and Signature data are not attachments: never counted, never touched', async (t) => {
  const e = engine(t);
  const obs = {
    resourceType: 'Observation',
    id: 'o',
    valueSampledData: { origin: { value: 0 }, dimensions: 1, data: '1 2 3 '.repeat(5000) },
  };
  const { text } = await e.inflate(JSON.stringify(obs), { maxBytes: 0 });
  t.equal(text, JSON.stringify(obs));
});

t.test('our other extensions on _data survive; a missing blob is linked, not fatal', async (t) => {
  const e = engine(t);
  const pdf = PDF(5000);
  const { text: held, ext } = await e.externalize(
    JSON.stringify({
      resourceType: 'DocumentReference',
      id: 'x',
      content: [
        {
          attachment: {
            contentType: 'application/pdf',
            data: b64(pdf),
            _data: { extension: [{ url: 'http://example.org/note', valueString: 'kept' }] },
          },
        },
      ],
    }),
  );
  await e.link(ext, 'DocumentReference/x');
  const out = JSON.parse((await e.inflate(held)).text);
  t.same(out.content[0].attachment._data, { extension: [{ url: 'http://example.org/note', valueString: 'kept' }] });
  t.ok(Buffer.from(out.content[0].attachment.data, 'base64').equals(pdf));
  await e.store.delete(ext.blobs[0].info.id);
  const gone = await e.inflate(held);
  t.match(JSON.parse(gone.text).content[0].attachment.url, /\$binary-access-read/);
  t.match(gone.warnings, [/missing/]);
});

t.test('malformed or truncated upstream JSON fails with UPSTREAM_INVALID', async (t) => {
  const e = engine(t);
  await t.rejects(e.inflate('{"resourceType":"Patient","id":"1"'), { code: 'UPSTREAM_INVALID' });
  await t.rejects(e.inflate('{"resourceType":"Patient",}'), { code: 'UPSTREAM_INVALID' });
  // No token before the end (a truncated literal) is not an empty body: refused, not passed as empty.
  await t.rejects(e.inflate('tru'), { code: 'UPSTREAM_INVALID' });
  await t.rejects(e.inflate(' nul', {}, 1), { code: 'UPSTREAM_INVALID' });
});

// ---- review findings (attack review of the read direction), kept as regression tests ----

/** A blob stored for DocumentReference/victim, and its reference as the upstream holds it. */
async function victim(e: ReturnType<typeof engine>) {
  const pdf = PDF(3000);
  const { text, ext } = await e.externalize(JSON.stringify(docRef('victim', pdf)), { minBytes: 100 });
  await e.link(ext, 'DocumentReference/victim');
  return { pdf, resource: text };
}

t.test('ownership comes from what was asked, not from a Bundle type the answer may state late', async (t) => {
  const e = engine(t);
  const { resource } = await victim(e);
  const early = `{"resourceType":"Bundle","id":"evil","type":"searchset","entry":[{"resource":${resource}}]}`;
  const late = `{"resourceType":"Bundle","id":"evil","entry":[{"resource":${resource}}],"type":"document"}`;
  for (const [body, owners] of [
    [early, 'root'],
    [late, 'root'],
    [late, 'by-type'],
  ] as const) {
    const { text, report } = await e.inflate(body, { owners });
    t.equal(report.inflated, 0, `${owners}: a read of Bundle/evil serves only what Bundle/evil owns`);
    t.equal(JSON.parse(text).entry[0].resource.content[0].attachment.data, undefined);
  }
  t.equal((await e.inflate(early, { owners: 'entries' })).report.inflated, 1, 'a search answer: each entry owns its own');
  t.equal((await e.inflate(early, { owners: 'by-type' })).report.inflated, 1, 'an operation answer typed searchset before its entries');
});

t.test(
  'a Bundle that owns its entries (a $document answer): content written for an entry is linked through it, never inlined',
  async (t) => {
    const e = engine(t);
    const { pdf, resource } = await victim(e);
    const bin = await e.externalize(JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: b64(pdf), id: 'b1' }), {
      binaryMinBytes: 0,
    });
    await e.link(bin.ext, 'Binary/b1');
    // Content the Bundle itself was written with (a document stored whole) is still its own.
    const own = await e.externalize(JSON.stringify(docRef('x', PDF(2000))), { minBytes: 100 });
    await e.link(own.ext, 'Bundle/doc1');
    // The entry's id after its content (Medplum's order): the link waits for it.
    const late = resource.replace(',"id":"victim"', '').replace(/}$/, ',"id":"victim"}');
    t.not(late, resource);
    const body = `{"resourceType":"Bundle","id":"doc1","type":"document","entry":[{"resource":${late}},{"resource":${bin.text}},{"resource":${own.text}}]}`;
    for (const owners of ['by-type', 'root'] as const) {
      const { text, report, warnings } = await e.inflate(body, { owners }, 7);
      const out = JSON.parse(text);
      const att = out.entry[0].resource.content[0].attachment;
      t.equal(att.data, undefined, `${owners}: not inlined: a link is checked again when followed`);
      t.equal(
        att.url,
        `${PUBLIC}/DocumentReference/victim/$binary-access-read?path=${encodeURIComponent('DocumentReference.content[0].attachment')}`,
        `${owners}: linked through the entry it was written for`,
      );
      t.equal(out.entry[1].resource._data.extension[0].valueUrl, `${PUBLIC}/Binary/b1`, `${owners}: a Binary entry: its own link`);
      t.ok(out.entry[2].resource.content[0].attachment.data, `${owners}: the Bundle's own content inline`);
      t.match(report, { inflated: 1, linked: 2 });
      t.same(warnings, [], `${owners}: nothing to warn of`);
    }
    // Content written for neither the Bundle nor the entry that carries it: the old answer (a link the Bundle refuses).
    const planted = body.replace('"id":"victim"', '"id":"other"');
    const { text, warnings } = await e.inflate(planted);
    t.match(JSON.parse(text).entry[0].resource.content[0].attachment.url, /\/Bundle\/doc1\/\$binary-access-read/);
    t.match(warnings, [/not written for this resource/]);
  },
);

t.test('a reference in a Signature or SampledData is never served or linked: removed, the rest of _data kept', async (t) => {
  const e = engine(t);
  const { resource } = await victim(e);
  const ref = JSON.parse(resource).content[0].attachment._data;
  const body = JSON.stringify({
    resourceType: 'Provenance',
    id: 'p1',
    signature: [
      { type: [], data: 'c2ln', _data: { ...ref, id: 'kept' } },
      { type: [], _data: ref },
    ],
  });
  const { text, report, warnings } = await e.inflate(body);
  const out = JSON.parse(text);
  t.same(out.signature[0], { type: [], data: 'c2ln', _data: { id: 'kept' } }, 'its own data as it was; only our reference goes');
  t.same(out.signature[1], { type: [] }, 'an emptied _data is left out');
  t.notOk(text.includes(BLOB_EXTENSION_URL));
  t.same(report, { inflated: 0, linked: 0, bytes: 0 });
  t.same(warnings, ['a blob reference outside an attachment was removed', 'a blob reference outside an attachment was removed']);
});

t.test('what waits for a late id is bounded: text, slots and held inline data all count', async (t) => {
  const e = engine(t);
  const { resource } = await victim(e);
  const noId = resource.replace(',"id":"victim"', '');
  const huge = noId
    .replace('"status":"current"', `"status":"current","description":"${'a'.repeat(9 * 1024 * 1024)}"`)
    .replace(/}$/, ',"id":"victim"}');
  // The attachment comes before the description here: its slot waits while 9 MiB of text pass.
  const after = noId.replace(/}$/, `,"description":"${'a'.repeat(9 * 1024 * 1024)}","id":"victim"}`);
  await t.rejects(e.inflate(after), { code: 'UPSTREAM_INVALID' }, 'text behind a waiting slot');
  t.equal((await e.inflate(huge)).report.inflated, 1, 'the same text before the attachment streams on');
  const many = noId.replace(
    /}$/,
    `,"contained":[${Array.from({ length: 20_000 }, () => '{"resourceType":"Media","content":{"contentType":"text/plain","data":"AA=="}}').join(',')}],"id":"victim"}`,
  );
  await t.rejects(e.inflate(many), { code: 'UPSTREAM_INVALID' }, 'many small slots');
  t.same(e.spooled(), []);
});

t.test('a spent budget asks the store nothing; a declared size that cannot fit neither', async (t) => {
  const e = engine(t);
  const { resource } = await victim(e);
  let heads = 0;
  const head = e.store.head.bind(e.store);
  e.store.head = (id: string) => {
    heads++;
    return head(id);
  };
  await e.inflate(resource, { maxBytes: 0 });
  t.equal(heads, 0, 'budget 0');
  await e.inflate(resource, { maxBytes: 2000 });
  t.equal(heads, 0, 'Attachment.size 3015 > 2000');
  await e.inflate(resource, { maxBytes: 10_000 });
  t.equal(heads, 1, 'only when it could fit');
});

t.test('our extension URL never reaches a client: malformed references and ones planted outside _data', async (t) => {
  const e = engine(t);
  const malformed = JSON.stringify({
    resourceType: 'DocumentReference',
    id: 'm',
    content: [
      {
        attachment: {
          contentType: 'text/plain',
          _data: {
            extension: [
              { url: BLOB_EXTENSION_URL, extension: [{ url: 'id', valueString: 'bad' }] },
              { url: 'http://example.org/x', valueString: 'kept' },
            ],
          },
        },
      },
    ],
  });
  const out1 = await e.inflate(malformed);
  t.notOk(out1.text.includes(BLOB_EXTENSION_URL));
  t.same(JSON.parse(out1.text).content[0].attachment._data, { extension: [{ url: 'http://example.org/x', valueString: 'kept' }] });
  const { resource } = await victim(e);
  const ref = JSON.parse(resource).content[0].attachment._data.extension[0];
  const planted = JSON.stringify({
    resourceType: 'DocumentReference',
    id: 'victim',
    content: [{ attachment: { contentType: 'text/plain', extension: [ref] } }],
  });
  const out2 = await e.inflate(planted);
  t.notOk(out2.text.includes(`"${BLOB_EXTENSION_URL}"`), 'replaced');
  t.equal(out2.report.inflated, 0);
  t.match(out2.warnings, [/did not write/]);
});

t.test('duplicate identity members and non-string data are refused or left out, never counted wrong', async (t) => {
  const e = engine(t);
  await t.rejects(e.inflate('{"resourceType":"Patient","id":"p","resourceType":"Binary"}'), { code: 'UPSTREAM_INVALID' });
  await t.rejects(e.inflate('{"resourceType":"Patient","id":"other","id":"victim"}'), { code: 'UPSTREAM_INVALID' });
  await t.rejects(e.inflate('{"resourceType":"Bundle","type":"searchset","type":"document"}'), { code: 'UPSTREAM_INVALID' });
  const arr = JSON.stringify({
    resourceType: 'DocumentReference',
    id: 'a',
    content: [{ attachment: { contentType: 'text/plain', data: [Buffer.alloc(20_000).toString('base64')] } }],
  });
  const { text } = await e.inflate(arr, { maxBytes: 0 });
  const att = JSON.parse(text).content[0].attachment;
  t.equal(att.data, undefined, 'not sent');
  t.match(att.url, /\$binary-access-read/, 'a link instead');
});

t.test('lone surrogates stay escaped; an empty body stays empty', async (t) => {
  const e = engine(t);
  const body = '{"resourceType":"Basic","id":"s","text":"\\ud800 and \\udfff"}';
  const { text } = await e.inflate(body, {}, 3);
  t.equal(text, body);
  t.equal((await e.inflate('')).text, '');
  t.equal((await e.inflate('  \n')).text, '');
});

t.test('a root `data` that is not a string is JSON, not content: walked, its attachments still held to the budget', async (t) => {
  const e = engine(t);
  // A $graphql answer: `{"data": {...}}`, a root of no resourceType.
  const gql = { data: { Patient: { id: 'p1', name: [{ family: 'Gql' }] }, PatientList: [{ id: 'p2' }] } };
  let out = await e.inflate(JSON.stringify(gql));
  t.same(JSON.parse(out.text), gql, 'a GraphQL answer passes whole');
  t.same(out.warnings, []);
  t.same(out.report, { inflated: 0, linked: 0, bytes: 0 });

  // An attachment inside it is still attachment content: counted, and left out past the budget.
  const pdf = PDF(30_000);
  const withPhoto = (data: string) => ({ data: { Patient: { id: 'p1', photo: [{ contentType: 'application/pdf', data }] } } });
  out = await e.inflate(JSON.stringify(withPhoto(b64(pdf))), { maxBytes: 10_000 });
  t.equal(JSON.parse(out.text).data.Patient.photo[0].data, undefined, 'past the budget: not sent');
  t.equal(out.report.bytes, 0);
  out = await e.inflate(JSON.stringify(withPhoto(b64(pdf))), { maxBytes: 100_000 });
  t.equal(JSON.parse(out.text).data.Patient.photo[0].data, b64(pdf), 'within it: sent');
  t.equal(out.report.bytes, pdf.length, 'and counted');

  // Other roots with such a member, its type read before or after it; other values than objects.
  for (const doc of [
    { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational' }], data: { any: 'thing' } },
    { data: { any: 'thing' }, resourceType: 'OperationOutcome', issue: [] },
    { resourceType: 'Parameters', parameter: [{ name: 'x', resource: { data: [1, { b: true }], resourceType: 'Basic', id: 'b' } }] },
    { data: 7 },
    { data: null },
    { data: [true, 'text'] },
  ])
    t.same(JSON.parse((await e.inflate(JSON.stringify(doc))).text), doc, `passes: ${JSON.stringify(doc).slice(0, 60)}`);

  // A string `data` at a root of unknown type is still counted as (possible) Binary.data.
  out = await e.inflate(JSON.stringify({ data: b64(pdf), id: 'x' }), { maxBytes: 10_000 });
  t.equal(JSON.parse(out.text).data, undefined, 'a string at an untyped root: held to the budget');
  // Binary.data that is not a string is malformed content: left out, as before.
  out = await e.inflate(JSON.stringify({ resourceType: 'Binary', id: 'b1', contentType: 'application/pdf', data: { not: 'base64' } }));
  t.equal(JSON.parse(out.text).data, undefined, 'a Binary: its non-string data left out');
  t.match(out.warnings, ['attachment data that is not a string was left out']);
});
