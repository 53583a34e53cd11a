// The headers of a bodiless answer the rewrite owns (HEAD, 204, 304): what its GET's 200 would say.
import t from 'tap';
import { bodiless } from '../../src/rewrite/response-rewrite.js';

t.test('a HEAD: the content Cache-Control, no upstream Content-Length; a 304: the Cache-Control, its headers otherwise kept', (t) => {
  const head = { 'content-length': 812, 'cache-control': 'max-age=3600', etag: 'W/"1"' };
  bodiless(true, head, 'no-store');
  t.same(head, { 'cache-control': 'no-store', etag: 'W/"1"' });
  const notModified = { 'content-length': 0, etag: 'W/"1"', 'last-modified': 'Mon, 01 Dec 2026 10:00:00 GMT' };
  bodiless(false, notModified, 'private, max-age=60');
  t.same(notModified, {
    'content-length': 0,
    etag: 'W/"1"',
    'last-modified': 'Mon, 01 Dec 2026 10:00:00 GMT',
    'cache-control': 'private, max-age=60',
  });
  t.end();
});
