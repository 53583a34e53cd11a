// Our extension URL leaves the gateway only where the gateway put it: withoutBlobUrls, for
// members passed on as they are held (a Binary's FHIR view).
import t from 'tap';
import { BLOB_EXTENSION_URL, REMOVED_URL, withoutBlobUrls } from '../../src/fhir/blob-reference.js';

t.test('our URL replaced wherever it is, everything else as it was', async (t) => {
  const planted = { url: BLOB_EXTENSION_URL, extension: [{ url: 'id', valueString: 'x' }] };
  const value = { id: 'b', meta: { extension: [planted, { url: 'urn:other' }] }, n: 1, s: 'text', nil: null, list: [[planted], 2] };
  t.same(withoutBlobUrls(value), {
    id: 'b',
    meta: { extension: [{ url: REMOVED_URL, extension: [{ url: 'id', valueString: 'x' }] }, { url: 'urn:other' }] },
    n: 1,
    s: 'text',
    nil: null,
    list: [[{ url: REMOVED_URL, extension: [{ url: 'id', valueString: 'x' }] }], 2],
  });
  t.equal(withoutBlobUrls(BLOB_EXTENSION_URL), BLOB_EXTENSION_URL, 'a value that is not a url member is not touched');
  let deep: unknown = planted;
  for (let i = 0; i < 300; i++) deep = { a: deep };
  t.throws(() => withoutBlobUrls(deep), { code: 'UPSTREAM_INVALID' }, 'deeper than any stored resource: refused, not walked without end');
});
