// FINDING (correctness): If-Range is ignored. A client resuming a download of version 1 with
// `Range: bytes=N-` + `If-Range: <its validator>` gets 206 with bytes of version 2, and
// silently builds a file that is neither. RFC 9110 §13.1.5: when the validator does not match,
// the server MUST ignore Range (send 200 with the whole content); a weak entity tag (ours are
// W/"versionId") never matches for If-Range, and a date matches only if it is the exact
// Last-Modified (strong only when at least a second older than the Date header).
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { uploadGoverned } from './helpers.js';

t.test('Range with a stale If-Range gets the whole new content, not a piece of it', async (t) => {
  const s = await stack(t);
  const v1 = PDF(4000);
  const id = await uploadGoverned(s, v1, 'application/pdf');
  const first = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=0-999' } });
  const validator = first.headers.get('etag')!;
  const lastModified = first.headers.get('last-modified')!;
  t.equal(first.status, 206, 'control: a plain Range is honoured');
  await first.arrayBuffer();
  // Kept as a sleep, on purpose: HTTP dates have whole seconds, and version 2 must get a
  // Last-Modified of its own (a later second) for the old date to be stale.
  await new Promise((r) => setTimeout(r, 1100));
  const v2 = PDF(4000);
  const put = await fetch(`${s.gw.base}/Binary/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: v2,
  });
  await put.arrayBuffer();
  t.equal(put.status, 200, 'version 2 written');

  /** Status, Content-Range and whether the body is the whole of version 2. */
  const whole = async (r: Response) => [r.status, r.headers.get('content-range'), Buffer.from(await r.arrayBuffer()).equals(v2)];
  const byEtag = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=1000-', 'if-range': validator } });
  t.same(await whole(byEtag), [200, null, true], `If-Range ${validator} (stale, and weak): the whole content`);
  const byDate = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=1000-', 'if-range': lastModified } });
  t.same(await whole(byDate), [200, null, true], 'If-Range with the old Last-Modified: the whole content');
  const access = await fetch(`${s.gw.base}/Binary/${id}/$binary-access-read?path=Binary.data`, {
    headers: { ...s.auth, range: 'bytes=1000-', 'if-range': validator },
  });
  t.same(await whole(access), [200, null, true], '$binary-access-read likewise');
});
