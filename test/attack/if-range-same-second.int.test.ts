// Attack 13c (class: range-if-range). If-Range with a date is honoured when it equals the current
// version's Last-Modified exactly. Last-Modified has one-second resolution (meta.lastUpdated cut to
// the second), so two versions written within the same second carry the same date: a client
// resuming a download of version 1 gets a 206 of version 2's bytes, and assembles a file that is
// neither (RFC 9110 §8.8.2.2: a date is a strong validator only if the server knows the
// representation did not change twice in that second).
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { createdId, stack, upload } from '../helpers/binary-stack.js';

t.test('a resumed download never splices two versions written in the same second', async (t) => {
  const s = await stack(t);
  const v1 = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(20_000)]);
  const v2 = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(20_000)]);
  let id = '';
  let lm1: string | null = null;
  let lm2: string | null = null;
  let head = Buffer.alloc(0);
  for (let attempt = 0; attempt < 10; attempt++) {
    // Start early in a second, so both writes land in it.
    while (Date.now() % 1000 > 50) await new Promise((r) => setTimeout(r, 5));
    const created = await upload(s, v1, 'application/pdf');
    await created.arrayBuffer();
    id = createdId(created);
    const first = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/pdf', range: 'bytes=0-99' } });
    head = Buffer.from(await first.arrayBuffer());
    lm1 = first.headers.get('last-modified');
    const put = await upload(s, v2, 'application/pdf', {}, 'PUT', `/Binary/${id}`);
    await put.arrayBuffer();
    t.equal(put.status, 200, 'updated');
    const now = await fetch(`${s.gw.base}/Binary/${id}`, { method: 'HEAD', headers: { ...s.auth, accept: 'application/pdf' } });
    lm2 = now.headers.get('last-modified');
    if (lm1 && lm1 === lm2) break;
  }
  t.ok(lm1 && lm1 === lm2, `two versions within one second share Last-Modified (${lm1} / ${lm2})`);
  t.same(head, v1.subarray(0, 100), 'the client holds the first 100 bytes of version 1');

  const resumed = await fetch(`${s.gw.base}/Binary/${id}`, {
    headers: { ...s.auth, accept: 'application/pdf', range: 'bytes=100-', 'if-range': lm1! },
  });
  const rest = Buffer.from(await resumed.arrayBuffer());
  const assembled = resumed.status === 206 ? Buffer.concat([head, rest]) : rest;
  t.equal(resumed.status, 200, 'the representation changed: the whole of it (200), not a range of another version');
  t.ok(assembled.equals(v1) || assembled.equals(v2), 'what the client assembles is one version, not a splice of two');
});
