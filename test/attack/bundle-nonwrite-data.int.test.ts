// FINDING (issue 12, Bundle entries): only a write's attachment data may be externalized. A POST
// _search or operation entry carrying a resource had its large data lifted into the store and
// the blob linked to no owner (nothing reclaims it), and the upstream got a reference where the
// operation expected content. Such entries are now held to the operation-body rule: data under
// externalize.minBytes, refused (413, naming the entry) before anything is stored.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle } from './helpers.js';

t.test('search and operation entries may not carry data at or above externalize.minBytes', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE], externalize: { minBytes: 1000 } });
  const params = (bytes: number) => ({
    resourceType: 'Parameters',
    parameter: [{ name: 'attachment', valueAttachment: { contentType: 'application/pdf', data: PDF(bytes).toString('base64') } }],
  });
  const before = s.up.requests.length;
  for (const url of ['DocumentReference/$validate', 'Observation/_search', '$process-message']) {
    const r = await bundle(s, s.auth, [{ request: { method: 'POST', url }, resource: params(5000) }]);
    const text = await r.text();
    t.same([r.status, JSON.parse(text).issue[0].details.coding[0].code], [413, 'PAYLOAD_TOO_LARGE'], url);
    t.match(text, /Bundle entry 0: .*only creates and updates store content/);
  }
  t.equal(s.up.requests.length, before, 'the upstream saw none');
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  // Small data in an operation entry passes as it is; a create's large data is stored as ever.
  const small = await bundle(s, s.auth, [{ request: { method: 'POST', url: 'DocumentReference/$validate' }, resource: params(100) }]);
  t.not(small.status, 413, 'under the threshold');
  await small.arrayBuffer();
  t.same(s.gw.blobFiles(), [], 'nothing stored for it');
  const create = await bundle(s, s.auth, [
    {
      request: { method: 'POST', url: 'DocumentReference' },
      resource: {
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', data: PDF(5000).toString('base64') } }],
      },
    },
  ]);
  t.equal(create.status, 200);
  await create.arrayBuffer();
  t.ok(s.gw.blobFiles().length > 0, 'a create still externalizes');
});
