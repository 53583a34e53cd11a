// Attack 13c (class: admin API audit). "Every call, refused ones too, is an audit record": the
// record is written by the admin plugin's onRequest hook, which only runs for the plugin's own
// routes. A call under /_admin/ that matches no route (a method the route does not take, a path
// one segment off) is answered by the root not-found handler: 404, no token asked, no record — a
// probe of the admin API leaves nothing in the trail.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { adminHeaders } from '../helpers/lifecycle.js';

t.test('admin calls that match no route are audited too', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const admin = await adminHeaders(s);
  // A routed call (no such blob: 404) is audited, and found so.
  const control = await fetch(`${s.gw.url}/_admin/blobs/0123456789abcdef0123456789abcdef`, { headers: admin });
  await control.arrayBuffer();
  t.equal(control.status, 404);
  await new Promise((res) => setTimeout(res, 200));
  const adminRecords = () =>
    s.gw.logs.lines.filter((l) => l['audit'] === 1 && (l['who'] as { system?: string } | undefined)?.system === 'admin-api').length;
  t.equal(adminRecords(), 1, 'control: a routed call is an audit record');
  const calls: [string, string, Record<string, string>][] = [
    ['PUT', '/_admin/blobs/0123456789abcdef0123456789abcdef', admin],
    ['GET', '/_admin/blobs/0123456789abcdef0123456789abcdef/link', {}],
    ['DELETE', '/_admin/blobs', admin],
  ];
  for (const [method, path, headers] of calls) {
    const before = adminRecords();
    const r = await fetch(`${s.gw.url}${path}`, { method, headers });
    await r.arrayBuffer();
    t.comment(`${method} ${path}: ${r.status}`);
    await new Promise((res) => setTimeout(res, 200));
    t.equal(adminRecords(), before + 1, `${method} ${path}: an audit record`);
  }
});
