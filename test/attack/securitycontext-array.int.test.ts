// FINDING: a securityContext that is not a single object (an array, as a lenient client or
// server may write it) is read as "no securityContext" by the gateway, both ways:
// - writing: BinaryPlane.writeResource reads `rewritten.securityContext?.reference`; on an array
//   that is undefined, so no check runs, and the upstream (Medplum here) stores
//   `securityContext: [{reference: "Patient/other"}]` for a writer who may not read Patient/other.
// - reading: SecurityContextGuard.binaryRead does the same, so such a Binary is served to
//   user/Binary.r alone, though it names a Patient the reader cannot read. Fail open, where every
//   other malformed reference fails closed (require('') → 403).
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { direct, outcome } from './helpers.js';

/** A securityContext that is not one Reference is malformed: refused before anything is checked or stored. */
const ARRAY_WRITE = [400, 'BAD_REQUEST'];

t.test('writing: an array securityContext is checked (or refused), not ignored', async (t) => {
  const s = await stack(t);
  const other = await direct(s, { resourceType: 'Patient' });
  const writer = await s.as('user/Binary.c');
  const body = JSON.stringify({
    resourceType: 'Binary',
    contentType: 'text/plain',
    data: 'aGk=',
    securityContext: [{ reference: `Patient/${other}` }],
  });
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...writer, 'content-type': 'application/fhir+json' }, body });
  t.same(await outcome(r), ARRAY_WRITE, 'refused');
  t.same(s.gw.blobFiles(), [], 'nothing stored');
});

t.test('reading: a Binary with an array securityContext is not served as ungoverned', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const id = await direct(s, {
    resourceType: 'Binary',
    contentType: 'application/pdf',
    securityContext: [{ reference: `Patient/${pid}` }],
    data: PDF(100).toString('base64'),
  });
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${id}`, { headers: await s.as('user/Binary.r') })),
    [403, 'INSUFFICIENT_SCOPE'],
    'Binary.r alone does not reach it',
  );
});
