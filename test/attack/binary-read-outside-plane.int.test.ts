// FINDING: Binary.securityContext is enforced only on the interactions the binary plane owns.
// Batch/transaction entries, instance history and search of Binary are authorized by the SMART
// pipeline alone and passed through, so the upstream returns governed Binaries (their inline
// data, or the internal blob reference) to callers the plane would refuse. Worst case:
// binaryReadDeferred() (src/security/scopes/grants.ts) lets a *patient-scoped* token read any
// Binary by id — inside a batch, where the promised plane check never happens.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle, direct, outcome, outcomeCodeOf, type Bundle } from './helpers.js';

t.test('a patient-scoped token reads another patient’s Binary inside a batch', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const me = await direct(s, { resourceType: 'Patient' });
  const other = await direct(s, { resourceType: 'Patient' });
  const secret = PDF(2000);
  // A Binary the upstream holds inline (docs/binary.md: read the same way, securityContext checked).
  const theirs = await direct(s, {
    resourceType: 'Binary',
    contentType: 'application/pdf',
    securityContext: { reference: `Patient/${other}` },
    data: secret.toString('base64'),
  });
  const token = await s.as('patient/*.rs', me);
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${theirs}`, { headers: token })),
    [403, 'INSUFFICIENT_SCOPE'],
    'the plain read is refused (securityContext of another patient)',
  );

  const r = await bundle(s, token, [{ request: { method: 'GET', url: `Binary/${theirs}` } }]);
  const text = await r.text();
  const leaked = (JSON.parse(text) as Bundle).entry?.[0]?.resource?.data as string | undefined;
  t.notOk(
    leaked !== undefined && Buffer.from(leaked, 'base64').equals(secret),
    'the batch entry does not return the other patient’s content',
  );
  // Binary entries are refused in any Bundle (400 BAD_BUNDLE): the plane's checks cannot run there.
  t.same([r.status, outcomeCodeOf(text)], [400, 'BAD_BUNDLE'], 'the batch is refused');
});

t.test('user/Binary.r without read access to the securityContext: batch read and instance history', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const pid = await direct(s, { resourceType: 'Patient' });
  const secret = PDF(2000);
  const governed = await direct(s, {
    resourceType: 'Binary',
    contentType: 'application/pdf',
    securityContext: { reference: `Patient/${pid}` },
    data: secret.toString('base64'),
  });
  const binaryOnly = await s.as('user/Binary.rs');
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${governed}`, { headers: binaryOnly })),
    [403, 'INSUFFICIENT_SCOPE'],
    'the plain read is refused',
  );

  const batch = await bundle(s, binaryOnly, [{ request: { method: 'GET', url: `Binary/${governed}` } }]);
  const batchText = await batch.text();
  t.equal((JSON.parse(batchText) as Bundle).entry?.[0]?.resource?.data, undefined, 'batch read: no content of a governed Binary');
  t.same([batch.status, outcomeCodeOf(batchText)], [400, 'BAD_BUNDLE'], 'batch read: refused');
  const hist = await fetch(`${s.gw.base}/Binary/${governed}/_history`, { headers: binaryOnly });
  const histText = await hist.text();
  t.equal((JSON.parse(histText) as Bundle).entry?.[0]?.resource?.data, undefined, 'instance history: no content of a governed Binary');
  t.same([hist.status, outcomeCodeOf(histText)], [403, 'INSUFFICIENT_SCOPE'], 'instance history: refused');
  // (Binary search would be the same hole on an upstream that indexes Binary; Medplum's in-memory
  // repository answers `Binary?_id=` with nothing, so it is not asserted here.)
});
