// One read of a resource gives every stored reference in it by where it sits, in the one form a
// link's path takes whichever way it is written (an update's own content links: own-content.ts).
import { Readable } from 'node:stream';
import t from 'tap';
import { parseAttachmentPath } from '../../src/fhir/attachment-path.js';
import { blobExtension } from '../../src/fhir/blob-reference.js';
import { canonicalSteps, MAX_STORED_REFS, readStoredRefs } from '../../src/rewrite/stored-refs.js';

const ref = (n: number) => ({ id: `${String(n).padStart(8, '0')}-0000-4000-8000-000000000000`, sha256: String(n % 10).repeat(64) });
const stored = (n: number) => ({ extension: [blobExtension(ref(n))] });
const pieces = (s: string, n: number) =>
  Readable.from(Array.from({ length: Math.ceil(s.length / n) }, (_, i) => Buffer.from(s.slice(i * n, (i + 1) * n))));

t.test('every reference, keyed by the path a link names it with', async (t) => {
  const doc = JSON.stringify({
    resourceType: 'DocumentReference',
    id: 'd1',
    text: { div: 'x'.repeat(20_000) },
    content: [
      { attachment: { contentType: 'application/pdf', data: 'AAAA'.repeat(5000), _data: stored(1) } },
      { attachment: { contentType: 'image/png', _data: stored(2) } },
    ],
    _status: { extension: [{ url: 'urn:x', valueAttachment: { _data: stored(3) } }] },
    contained: [{ resourceType: 'Binary', _data: stored(4) }],
    // An array in an array is not FHIR: kept under a name no link path has.
    grid: [[{ _data: stored(6) }]],
    // A member named like two steps: never the place those steps name.
    'content[0].attachment': { _data: stored(7) },
    // Not ours: kept out.
    extension: [{ url: 'urn:y', valueAttachment: { _data: { extension: [{ url: 'urn:other', valueString: 'z' }] } } }],
  });
  for (const size of [1, 13, 4096, 1 << 16]) {
    const refs = await readStoredRefs(pieces(doc, size));
    const at = (path: string) => refs.get(canonicalSteps(parseAttachmentPath(path, 'DocumentReference')))?.id;
    t.equal(refs.size, 5, `${size}: the four reachable ones, and the unreachable ones under one name no link path has`);
    t.ok(
      [...refs.keys()].some((k) => k.startsWith('!')),
      `${size}: the one in an array of arrays is named apart`,
    );
    t.equal(at('DocumentReference.content.attachment'), ref(1).id, `${size}: no index is the first item`);
    t.equal(at('DocumentReference.content[0].attachment[0]'), ref(1).id, `${size}: [0] on a single element is the element`);
    t.equal(at('DocumentReference.content[1].attachment'), ref(2).id);
    t.equal(at('DocumentReference._status.extension[0].valueAttachment'), ref(3).id, 'a primitive’s extension');
    t.equal(at('DocumentReference.contained[0]'), ref(4).id, 'a contained Binary');
    t.equal(at('DocumentReference.content[2].attachment'), undefined, 'nothing there');
    t.equal(at('DocumentReference.content[1].attachment.extension'), undefined, 'below an attachment is not it');
  }
  const binary = await readStoredRefs(pieces(JSON.stringify({ resourceType: 'Binary', _data: stored(5) }), 7));
  t.equal(binary.get('')?.id, ref(5).id, 'Binary.data at the root');
});

t.test('what is not a resource, or holds more references than any stored resource, is refused', async (t) => {
  await t.rejects(readStoredRefs(pieces('[1,2]', 2)), { code: 'UPSTREAM_INVALID', message: /not a JSON object/ });
  await t.rejects(readStoredRefs(pieces('{"a":', 2)), { code: 'UPSTREAM_INVALID' });
  const many = JSON.stringify({
    resourceType: 'Media',
    content: Array.from({ length: MAX_STORED_REFS + 1 }, (_, i) => ({ _data: stored(i) })),
  });
  await t.rejects(readStoredRefs(pieces(many, 1 << 16)), { code: 'UPSTREAM_INVALID', message: /more than 10000 stored attachments/ });
});
