// FINDING: "Replacing a Binary (PUT, $binary-access-write) also requires read access to the
// securityContext of the version being replaced, so a caller cannot take over content governed
// by another patient" (docs/security.md) — unless the caller deletes it first. DELETE of Binary
// is plain pass-through (only `d` on Binary), and BinaryPlane.guardUpdate treats any non-200
// answer to its read (here 410 Gone) as "no current version, nothing to protect". The id that
// the patient's documents point at then serves the attacker's content.
import t from 'tap';
import { PDF, sha256, stack } from '../helpers/binary-stack.js';
import { direct, outcome, uploadGoverned } from './helpers.js';

t.test('DELETE then PUT takes over a Binary governed by a patient the caller cannot read', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const original = PDF(3000);
  const governed = await uploadGoverned(s, original, 'application/pdf', `Patient/${pid}`);
  const attacker = await s.as('user/Binary.cud');
  const mine = PDF(3000);
  const put = () =>
    fetch(`${s.gw.base}/Binary/${governed}`, { method: 'PUT', headers: { ...attacker, 'content-type': 'application/pdf' }, body: mine });
  const refused = [403, 'INSUFFICIENT_SCOPE'];
  t.same(await outcome(put()), refused, 'replacing it directly is refused');
  const del = await outcome(fetch(`${s.gw.base}/Binary/${governed}`, { method: 'DELETE', headers: attacker }));
  t.same(del, refused, 'deleting it needs the same right as replacing it');
  t.same(await outcome(put()), refused, 'and a PUT over the deleted id still needs access to the context of its last version');
  const served = await fetch(`${s.gw.base}/Binary/${governed}`, { headers: s.auth });
  t.equal(served.status, 200, 'the governed Binary is still there');
  const bytes = sha256(Buffer.from(await served.arrayBuffer()));
  t.not(bytes, sha256(mine), 'the governed id does not serve the attacker’s content');
  t.equal(bytes, sha256(original), 'it serves what the owner uploaded');
});
