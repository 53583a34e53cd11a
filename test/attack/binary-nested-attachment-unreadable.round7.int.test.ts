// Attack round 7 of issue 13 (content links). A FHIR Binary body may carry attachments besides
// Binary.data (an extension's valueAttachment): the write side stored their data too, but a Binary
// read as FHIR JSON (binary-read.ts serve) is not the response rewrite: it wrote every member as
// the upstream holds it and streamed Binary.data only. So our blob reference reached the client,
// the nested content was neither inlined nor linked (`$binary-access-read` on a Binary takes only
// `Binary.data`): stored content no one could read back, and the read-modify-update was refused.
// Fixed: a Binary carries content only in Binary.data (anything else refused, nothing stored), and
// the FHIR view replaces our extension URL wherever it was planted around the gateway.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { createDocument, documentBlob, sendResource } from '../helpers/lifecycle.js';
import { outcome } from './helpers.js';

const BLOB_EXTENSION = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference';

t.test('content beside Binary.data is refused, whole, and nothing is stored', async (t) => {
  const s = await stack(t);
  const nested = { contentType: 'application/pdf', data: PDF(70_000).toString('base64') };
  const bodies = {
    'an extension': { extension: [{ url: 'urn:example:scan', valueAttachment: nested }] },
    "meta's extension, before resourceType": { meta: { extension: [{ url: 'urn:example:scan', valueAttachment: nested }] } },
    'small enough to stay inline': { extension: [{ url: 'urn:x', valueAttachment: { contentType: 'text/plain', data: 'aGk=' } }] },
  };
  for (const [name, extra] of Object.entries(bodies)) {
    const body = { ...extra, resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('hello').toString('base64') };
    const r = sendResource(s, 'POST', '/Binary', body);
    t.same(await outcome(r), [400, 'BAD_REQUEST'], `${name}: refused`);
    t.same(
      s.gw.blobFiles().filter((f) => f.endsWith('.blob')),
      [],
      `${name}: nothing stored`,
    );
  }
});

t.test('a reference planted in a Binary around the gateway never leaves its FHIR view', async (t) => {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  t.ok(await documentBlob(s, doc.id), 'the document’s content is stored');
  const stored = JSON.parse(await (await fetch(`${s.up.url}/DocumentReference/${doc.id}`)).text()) as Record<string, any>;
  const ref = stored.content[0].attachment._data;
  const planted = await fetch(`${s.up.url}/Binary`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Binary',
      contentType: 'text/plain',
      data: Buffer.from('hello').toString('base64'),
      meta: { extension: [{ url: 'urn:x', valueAttachment: { contentType: 'application/pdf', _data: ref } }] },
    }),
  });
  const id = ((await planted.json()) as { id: string }).id;
  const read = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  const text = await read.text();
  t.equal(read.status, 200);
  t.notOk(text.includes(`"${BLOB_EXTENSION}"`), 'no blob reference of the gateway in the answer');
  t.match(text, /blob-reference-removed/, 'its URL replaced, as the response rewrite does');
  t.equal(Buffer.from((JSON.parse(text) as { data: string }).data, 'base64').toString(), 'hello', 'the Binary’s own content as stored');
});
