// The PATCH guard: JSON Patch and FHIRPath Patch pass unchanged unless they touch attachment
// members (data, contentType, url and their `_` elements) or carry our blob reference, however
// the body is cut.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { patchGuard } from '../../src/rewrite/patch-guard.js';
import { pieces } from '../helpers/engine.js';

async function guard(body: string, cut = 65536, mayRead = true): Promise<string> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces(Buffer.from(body), cut)), patchGuard({ mayRead }), async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out).toString();
}

const fhirPathPatch = (...parts: { name: string; [k: string]: unknown }[]) =>
  JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'operation', part: parts }] });

const ALLOWED: [string, string][] = [
  ['status', JSON.stringify([{ op: 'replace', path: '/status', value: 'superseded' }])],
  ['empty', '[]'],
  ['extension url', JSON.stringify([{ op: 'add', path: '/extension/-', value: { url: 'http://x', valueString: 'y' } }])],
  ['extension url by pointer', JSON.stringify([{ op: 'replace', path: '/extension/0/url', value: 'http://x' }])],
  ['a canonical resource url', JSON.stringify([{ op: 'replace', path: '/url', value: 'http://x/vs' }])],
  ['attachment title', JSON.stringify([{ op: 'replace', path: '/content/0/attachment/title', value: 'report' }])],
  ['signature data is not attachment content', JSON.stringify([{ op: 'replace', path: '/signature/0/data', value: 'AAAA' }])],
  ['a value that mentions data', JSON.stringify([{ op: 'replace', path: '/description', value: 'see data, contentType and url' }])],
  [
    'FHIRPath Patch replace',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'Observation.status' },
      { name: 'value', valueCode: 'final' },
    ),
  ],
  [
    'FHIRPath Patch value text',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'Observation.note.text' },
      { name: 'value', valueString: 'data' },
    ),
  ],
];

const REFUSED: [string, string][] = [
  ['moving an attachment', JSON.stringify([{ op: 'move', from: '/content/1', path: '/content/0' }])],
  ['copy', JSON.stringify([{ op: 'copy', from: '/extension/0/valueSignature', path: '/content/0/attachment' }])],
  [
    'contentType below a Signature',
    JSON.stringify([
      { op: 'add', path: '/extension/-', value: { url: 'http://x', valueSignature: { contentType: 'text/html', data: 'AAAA' } } },
    ]),
  ],
  [
    'FHIRPath delimited identifier',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'DocumentReference.content[0].attachment.`cont\\entType`' },
      { name: 'value', valueCode: 'text/html' },
    ),
  ],
  [
    'FHIRPath escape',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'DocumentReference.content[0].attachment.\\u0064ata' },
      { name: 'value', valueCode: 'x' },
    ),
  ],
  [
    'FHIRPath Signature value',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'DocumentReference.content[0].attachment' },
      { name: 'value', valueSignature: { data: 'AAAA' } },
    ),
  ],
  ['data', JSON.stringify([{ op: 'add', path: '/content/0/attachment/data', value: 'PGgxPg==' }])],
  ['contentType', JSON.stringify([{ op: 'replace', path: '/content/0/attachment/contentType', value: 'text/html' }])],
  ['_data', JSON.stringify([{ op: 'add', path: '/content/0/attachment/_data', value: { extension: [] } }])],
  ['url', JSON.stringify([{ op: 'replace', path: '/content/0/attachment/url', value: 'http://elsewhere' }])],
  ['photo data', JSON.stringify([{ op: 'add', path: '/photo/0/data', value: 'AAAA' }])],
  ['escaped pointer and key', '[{"op":"add","p\\u0061th":"/content/0/attachment/\\u0064ata","value":"AAAA"}]'],
  ['from data', JSON.stringify([{ op: 'copy', from: '/content/0/attachment/data', path: '/text/div' }])],
  [
    'an attachment value',
    JSON.stringify([{ op: 'add', path: '/content/-', value: { attachment: { contentType: 'text/html', data: 'PGgxPg==' } } }]),
  ],
  ['a nested contentType', JSON.stringify([{ op: 'add', path: '/content/0/attachment', value: { contentType: 'text/html' } }])],
  ['our extension', JSON.stringify([{ op: 'add', path: '/extension/-', value: { url: BLOB_EXTENSION_URL } }])],
  [
    'FHIRPath Patch name',
    fhirPathPatch(
      { name: 'type', valueCode: 'add' },
      { name: 'path', valueString: 'DocumentReference.content[0].attachment' },
      { name: 'name', valueString: 'data' },
      { name: 'value', valueBase64Binary: 'PGgxPg==' },
    ),
  ],
  [
    'FHIRPath Patch path',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'DocumentReference.content[0].attachment.contentType' },
      { name: 'value', valueCode: 'text/html' },
    ),
  ],
  [
    'FHIRPath Patch url',
    fhirPathPatch(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'Media.content.url' },
      { name: 'value', valueUrl: 'http://x' },
    ),
  ],
  [
    'FHIRPath Patch attachment value',
    fhirPathPatch(
      { name: 'type', valueCode: 'add' },
      { name: 'path', valueString: 'Patient' },
      { name: 'name', valueString: 'photo' },
      { name: 'value', valueAttachment: { contentType: 'text/html' } },
    ),
  ],
];

t.test('patches that leave attachments alone pass unchanged', async (t) => {
  for (const [name, body] of ALLOWED) {
    for (const cut of [65536, 7, 1]) t.equal(await guard(body, cut), body, `${name} (cut ${cut})`);
  }
});

t.test('patches that touch attachment members are refused', async (t) => {
  for (const [name, body] of REFUSED) {
    for (const cut of [65536, 5]) {
      await t.rejects(guard(body, cut), { code: 'BAD_REQUEST' }, `${name} (cut ${cut})`);
    }
  }
  await t.rejects(
    guard(REFUSED.find(([n]) => n === 'data')![1]),
    { message: /attachment members \('data'\).*\$binary-access-write/ },
    'says what to do instead',
  );
  await t.rejects(guard('[{"op":'), { code: 'BAD_REQUEST' }, 'malformed');
});

t.test('a JSON Patch test reads the resource: refused to a caller who may not read it', async (t) => {
  const body = JSON.stringify([{ op: 'test', path: '/subject/reference', value: 'Patient/1' }]);
  t.equal(await guard(body, 65536, true), body, 'a reader may test');
  await t.rejects(guard(body, 65536, false), { code: 'INSUFFICIENT_SCOPE' });
  await t.rejects(
    guard(
      JSON.stringify([
        { op: 'replace', path: '/status', value: 'x' },
        { op: 'test', path: '/status', value: 'x' },
      ]),
      3,
      false,
    ),
    {
      code: 'INSUFFICIENT_SCOPE',
    },
  );
});

t.test('a FHIRPath Patch path with a function reads the resource too', async (t) => {
  const body = fhirPathPatch(
    { name: 'type', valueCode: 'replace' },
    { name: 'path', valueString: "DocumentReference.description.where($this = 'GUESS')" },
    { name: 'value', valueString: 'GUESS' },
  );
  t.equal(await guard(body, 65536, true), body, 'a reader may');
  await t.rejects(guard(body, 65536, false), { code: 'INSUFFICIENT_SCOPE' });
});

t.test('a conditional reference is a search: a patch may not set one; a plain reference passes', async (t) => {
  const refused = [
    ['a reference string by pointer', [{ op: 'replace', path: '/subject/reference', value: 'Patient?identifier=x' }]],
    ['value before path', [{ value: 'Patient?birthdate=1970-01-01', op: 'replace', path: '/subject/reference' }]],
    ['a Reference object', [{ op: 'replace', path: '/subject', value: { reference: 'Patient?identifier=x' } }]],
    [
      'deep in a value',
      [{ op: 'add', path: '/performer/-', value: { extension: [{ url: 'u', valueReference: { reference: 'Practitioner?name=a' } }] } }],
    ],
  ] as const;
  for (const [what, patch] of refused) {
    for (const cut of [65536, 3]) {
      await t.rejects(guard(JSON.stringify(patch), cut), { code: 'BAD_REQUEST', message: /conditional reference/ }, `${what} (cut ${cut})`);
    }
  }
  await t.rejects(
    guard(
      fhirPathPatch(
        { name: 'type', valueCode: 'add' },
        { name: 'path', valueString: 'Observation' },
        { name: 'name', valueString: 'subject' },
        { name: 'value', valueReference: { reference: 'Patient?identifier=x' } },
      ),
    ),
    { code: 'BAD_REQUEST' },
    'FHIRPath Patch valueReference',
  );
  await t.rejects(
    guard(
      fhirPathPatch(
        { name: 'type', valueCode: 'replace' },
        { name: 'path', valueString: 'Observation.subject.reference' },
        { name: 'value', valueString: 'Patient/1' },
      ),
    ),
    { code: 'BAD_REQUEST', message: /valueReference/ },
    'FHIRPath Patch setting a reference string',
  );
  for (const patch of [
    [{ op: 'replace', path: '/subject/reference', value: 'Patient/2' }],
    [{ op: 'replace', path: '/note/0/text', value: 'Pain? yes=3' }],
  ]) {
    t.equal(await guard(JSON.stringify(patch)), JSON.stringify(patch), `passes: ${JSON.stringify(patch)}`);
  }
});
