// Fixed: path names are checked one by one (externalize.ts placeable); stored-refs never matches such a name to a link path.
// Attack round 8 of issue 13. The placement rule (externalize.ts `placeable`) tests the *string*
// pathBelow() builds (json/walk-policy.ts: `.${key}` per member, keys verbatim) against the link
// grammar, not each member name: a key `content[0].attachment` (one member) passes as two steps.
// Its data is stored, and every read past the budget links it as
// `path=DocumentReference.content[0].attachment` — which `$binary-access-read` resolves by real
// members to the real first attachment: the link serves other bytes than the attachment it was
// given for (whose `hash` says otherwise). The canonical form of stored references
// (stored-refs.ts canonicalAt) aliases them the same way.
import t from 'tap';
import { sendResource, readLinked } from '../helpers/lifecycle.js';
import { createHash } from 'node:crypto';
import { PDF, stack } from '../helpers/binary-stack.js';

const BASE = 'http://gateway.test/fhir';

t.test('a member name that reads as two steps', async (t) => {
  const s = await stack(t);
  const a = PDF(70_000);
  const b = PDF(71_000);
  t.not(a.toString('base64'), b.toString('base64'));
  const r = await sendResource(s, 'POST', '/DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: a.toString('base64') } }],
    'content[0].attachment': { contentType: 'application/pdf', data: b.toString('base64') },
  });
  const created = await r.text();
  t.comment(`create: ${r.status} ${created.slice(0, 200)}`);
  if (r.status !== 201) {
    t.equal(r.status, 400, 'refused: a member name no path can name');
    return;
  }
  const id = (JSON.parse(created) as { id: string }).id;
  const read = await readLinked(s, `/DocumentReference/${id}`);
  const odd = read['content[0].attachment'];
  t.comment(`odd attachment: ${JSON.stringify(odd).slice(0, 300)}`);
  const followed = await fetch(`${s.gw.base}${String(odd.url).slice(BASE.length)}`, { headers: s.auth });
  const got = Buffer.from(await followed.arrayBuffer());
  t.equal(
    createHash('sha1').update(got).digest('base64'),
    odd.hash,
    `its link serves the bytes its hash names (got ${followed.status}, ${got.length} bytes; a is ${a.length}, b is ${b.length})`,
  );
});
