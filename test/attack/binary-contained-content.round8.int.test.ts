// Fixed: every resource learns that content was placed below it; a Binary with any is refused whole (externalize.ts contentPlaced).
// Attack round 8 of issue 13. Round 7 made "a Binary carries content only in Binary.data"
// (externalize-attachment.ts checkAllowed `nested`), judged per *resource root*: an attachment is
// filed to its nearest root (externalize.ts resourceOf), and a root is any `contained[i]`, or any
// object under a `resource` or `outcome` key (json-positions.ts isResourceRoot). A Binary whose
// `contained` (or an extension's `resource`) holds a DocumentReference with attachment data files
// that data to the contained DocumentReference, not to the Binary: stored, while the Binary's FHIR
// view (binary-read.ts) passes every other member as it is (our reference only renamed) and
// `$binary-access-read` on a Binary names only Binary.data. Stored content no one can read back.
import t from 'tap';
import { sendResource } from '../helpers/lifecycle.js';
import { PDF, stack } from '../helpers/binary-stack.js';

t.test('content in a resource inside a Binary is refused, and nothing is stored', async (t) => {
  const s = await stack(t);
  const nested = { contentType: 'application/pdf', data: PDF(70_000).toString('base64') };
  const doc = { resourceType: 'DocumentReference', status: 'current', content: [{ attachment: nested }] };
  const bodies = {
    contained: { contained: [doc] },
    "an extension's resource": { extension: [{ url: 'urn:x', resource: doc }] },
    'a contained Binary': { contained: [{ resourceType: 'Binary', ...nested }] },
  };
  for (const [name, extra] of Object.entries(bodies)) {
    const before = s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length;
    const body = { resourceType: 'Binary', contentType: 'text/plain', data: Buffer.from('hello').toString('base64'), ...extra };
    const r = await sendResource(s, 'POST', '/Binary', body);
    const status = r.status;
    const text = await r.text();
    t.comment(`${name}: ${status} ${text.slice(0, 200)}`);
    const blobs = s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length - before;
    if (status === 201) {
      const id = (r.headers.get('location') ?? '').split('/')[5];
      const view = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
      const v = await view.text();
      t.comment(`view: ${v.replace(/"data":"[^"]{40}[^"]*"/g, '"data":"…"').slice(0, 600)}`);
    }
    t.equal(status, 400, `${name}: refused, as content beside Binary.data is`);
    t.equal(blobs, 0, `${name}: nothing stored`);
  }
});
