// FINDING: SecurityContextGuard.require (src/binary/security-context.ts) decides "may the caller
// read the securityContext?" with smartGrants(), which contains the binaryReadDeferred exception
// meant only for the pipeline: a patient-scoped read of `Binary/{id}` is "granted" there on the
// promise that the plane checks that Binary's own securityContext later. When a Binary's
// securityContext names another Binary (a derived rendition, a thumbnail, a signature), require()
// accepts it for ANY patient-scoped token and never looks at the named Binary: every patient reads
// every such Binary.
import t from 'tap';
import { PDF, PNG, stack } from '../helpers/binary-stack.js';
import { direct, outcome, uploadGoverned } from './helpers.js';

const REFUSED = [403, 'INSUFFICIENT_SCOPE'];

t.test('a Binary governed by another patient’s Binary is readable by any patient', async (t) => {
  const s = await stack(t);
  const me = await direct(s, { resourceType: 'Patient' });
  const other = await direct(s, { resourceType: 'Patient' });
  const original = await uploadGoverned(s, PDF(3000), 'application/pdf', `Patient/${other}`);
  const thumbnail = await uploadGoverned(s, PNG, 'image/png', `Binary/${original}`);
  const token = await s.as('patient/*.rs', me);
  t.same(await outcome(fetch(`${s.gw.base}/Binary/${original}`, { headers: token })), REFUSED, 'the original is refused to me');
  t.same(await outcome(fetch(`${s.gw.base}/Binary/${thumbnail}`, { headers: token })), REFUSED, 'so is what it governs');
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${thumbnail}/$binary-access-read?path=Binary.data`, { headers: token })),
    REFUSED,
    'and by $binary-access-read',
  );
  // Control: a user-level reader of every type still reads it (the refusal is the chain's, not a broken Binary).
  t.equal((await fetch(`${s.gw.base}/Binary/${thumbnail}`, { headers: s.auth })).status, 200, 'user/*.r reads the thumbnail');
});
