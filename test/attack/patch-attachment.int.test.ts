// FINDING (issue 12 hole 6): PATCH bypassed the write rules. A JSON Patch could set
// `contentType: text/html` plus `data`, or add our blob-reference extension, and
// `$binary-access-read` then served the HTML. A patch that touches attachment members is now
// refused before the upstream sees it (src/rewrite/patch-guard.ts), in either patch format.
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

const HTML = Buffer.from('<html><script>alert(1)</script></html>').toString('base64');

t.test('a patch cannot change attachment content or its type', async (t) => {
  const s = await stack(t);
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'text/plain', data: 'aGVsbG8=' } }],
    }),
  });
  const { id } = (await c.json()) as { id: string };
  const patch = (body: unknown, type = 'application/json-patch+json') =>
    fetch(`${s.gw.base}/DocumentReference/${id}`, {
      method: 'PATCH',
      headers: { ...s.auth, 'content-type': type },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  const version = async () =>
    ((await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as { meta: { versionId: string } }).meta.versionId;
  const patches = s.up.requests.filter((r) => r.method === 'PATCH').length;

  t.same(
    await outcome(
      patch([
        { op: 'replace', path: '/content/0/attachment/contentType', value: 'text/html' },
        { op: 'replace', path: '/content/0/attachment/data', value: HTML },
      ]),
    ),
    [400, 'BAD_REQUEST'],
    'contentType + data',
  );
  t.same(
    await outcome(patch([{ op: 'add', path: '/content/-', value: { attachment: { contentType: 'text/html', data: HTML } } }])),
    [400, 'BAD_REQUEST'],
    'a whole attachment',
  );
  t.same(
    await outcome(
      patch([{ op: 'add', path: '/content/0/attachment/_data', value: { extension: [{ url: BLOB_EXTENSION_URL, valueString: 'x' }] } }]),
    ),
    [400, 'BAD_REQUEST'],
    'our extension',
  );
  t.same(
    await outcome(patch([{ op: 'add', path: '/extension/-', value: { url: BLOB_EXTENSION_URL } }])),
    [400, 'BAD_REQUEST'],
    'our URL anywhere',
  );
  const fhirPath = {
    resourceType: 'Parameters',
    parameter: [
      {
        name: 'operation',
        part: [
          { name: 'type', valueCode: 'replace' },
          { name: 'path', valueString: 'DocumentReference.content[0].attachment.contentType' },
          { name: 'value', valueCode: 'text/html' },
        ],
      },
    ],
  };
  t.same(await outcome(patch(fhirPath, 'application/fhir+json')), [400, 'BAD_REQUEST'], 'FHIRPath Patch');
  t.same(await outcome(patch('<diff/>', 'application/xml-patch+xml')), [415, 'UNSUPPORTED_MEDIA'], 'XML Patch cannot be checked');
  // Found from outside after the first fix: escapes, Signature values carried into an attachment, move/copy, Bundle entries.
  const fhirPathReplace = (path: string, value: Record<string, unknown>) => ({
    resourceType: 'Parameters',
    parameter: [
      {
        name: 'operation',
        part: [
          { name: 'type', valueCode: 'replace' },
          { name: 'path', valueString: path },
          { name: 'value', ...value },
        ],
      },
    ],
  });
  t.same(
    await outcome(
      patch(
        fhirPathReplace('DocumentReference.content[0].attachment.`cont\\entType`', { valueCode: 'text/html' }),
        'application/fhir+json',
      ),
    ),
    [400, 'BAD_REQUEST'],
    'FHIRPath delimited identifier',
  );
  t.same(
    await outcome(
      patch(
        fhirPathReplace('DocumentReference.content[0].attachment', { valueSignature: { contentType: 'text/html', data: HTML } }),
        'application/fhir+json',
      ),
    ),
    [400, 'BAD_REQUEST'],
    'a Signature value',
  );
  t.same(
    await outcome(
      patch([
        { op: 'add', path: '/extension', value: [{ url: 'http://x', valueSignature: { sigFormat: 'text/html', data: HTML } }] },
        { op: 'move', from: '/extension/0/valueSignature', path: '/content/0/attachment' },
      ]),
    ),
    [400, 'BAD_REQUEST'],
    'a Signature moved into an attachment',
  );
  const entryPatch = await fetch(s.gw.base, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        {
          request: { method: 'PATCH', url: `DocumentReference/${id}` },
          resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from('[]').toString('base64') },
        },
      ],
    }),
  });
  t.same(await outcome(entryPatch), [400, 'BAD_BUNDLE'], 'PATCH inside a Bundle');
  const reader = await s.as('user/DocumentReference.u fhir.write');
  const probe = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PATCH',
    headers: { ...reader, 'content-type': 'application/json-patch+json' },
    body: JSON.stringify([{ op: 'test', path: '/status', value: 'guess' }]),
  });
  t.same(await outcome(probe), [403, 'INSUFFICIENT_SCOPE'], 'a JSON Patch test is a read: refused without read');
  t.equal(s.up.requests.filter((r) => r.method === 'PATCH').length, patches, 'none reached the upstream');
  t.equal(await version(), '1', 'the resource is unchanged');

  const read = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.equal(read.headers.get('content-type'), 'text/plain', 'still served as what was checked');
  t.equal(await read.text(), 'hello');

  const ok = await patch([
    { op: 'replace', path: '/status', value: 'superseded' },
    { op: 'add', path: '/extension', value: [{ url: 'http://example.org/x', valueString: 'y' }] },
  ]);
  t.equal(ok.status, 200, 'a patch that leaves attachments alone is applied');
  t.equal(((await ok.json()) as { status: string }).status, 'superseded');
  t.equal(await version(), '2');
});

t.test('inline content of a type the policy does not allow, written around the gateway, is served as bytes', async (t) => {
  const s = await stack(t);
  const p = await fetch(`${s.up.url}/DocumentReference`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'text/html', data: HTML } }],
    }),
  });
  const { id } = (await p.json()) as { id: string };
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  t.equal(read.status, 200);
  t.equal(read.headers.get('content-type'), 'application/octet-stream', 'not text/html');
  t.equal(Buffer.from(await read.arrayBuffer()).toString('base64'), HTML, 'the bytes as held');
});

t.test('Signature data is not attachment content: not served, not written', async (t) => {
  // FINDING (issue 12 hole 9): `Provenance.signature.data` with `text/html` was served as content.
  const s = await stack(t);
  const p = await fetch(`${s.up.url}/Provenance`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Provenance',
      target: [{ reference: 'Patient/x' }],
      recorded: '2026-01-01T00:00:00Z',
      agent: [{ who: { display: 'x' } }],
      signature: [
        {
          type: [{ system: 'urn:iso-astm:E1762-95:2013', code: '1.2.840.10065.1.12.1.1' }],
          when: '2026-01-01T00:00:00Z',
          who: { display: 'x' },
          sigFormat: 'text/html',
          data: HTML,
        },
      ],
    }),
  });
  const { id } = (await p.json()) as { id: string };
  for (const path of ['Provenance.signature', 'Provenance.signature[0]']) {
    t.same(
      await outcome(fetch(`${s.gw.base}/Provenance/${id}/$binary-access-read?path=${path}`, { headers: s.auth })),
      [400, 'BAD_REQUEST'],
      `read ${path}`,
    );
    t.same(
      await outcome(
        fetch(`${s.gw.base}/Provenance/${id}/$binary-access-write?path=${path}`, {
          method: 'POST',
          headers: { ...s.auth, 'content-type': 'text/plain' },
          body: 'x',
        }),
      ),
      [400, 'BAD_REQUEST'],
      `write ${path}`,
    );
  }
  t.same(
    await outcome(fetch(`${s.gw.base}/Observation/1/$binary-access-read?path=Observation.valueSampledData`, { headers: s.auth })),
    [400, 'BAD_REQUEST'],
    'SampledData',
  );
  // Found from outside: content written into an element that is not an Attachment (a CodeableConcept).
  const o = await fetch(`${s.up.url}/Observation`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { coding: [{ code: 'x' }], text: 't' } }),
  });
  const oid = ((await o.json()) as { id: string }).id;
  const into = await fetch(`${s.gw.base}/Observation/${oid}/$binary-access-write?path=Observation.code`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'text/plain' },
    body: 'x',
  });
  t.same(await outcome(into), [400, 'BAD_REQUEST'], 'not an Attachment');
  t.same(s.gw.blobFiles(), [], 'nothing stored');
});
