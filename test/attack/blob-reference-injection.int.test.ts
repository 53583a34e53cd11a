// FINDING: the gateway serves any blob a resource's reference names, whoever wrote the reference.
// The blob-reference extension is refused only in FHIR Binary bodies (src/rewrite/externalize.ts).
// A DocumentReference/Media created or updated by plain pass-through, or a Binary written in a
// transaction, can carry `_data.extension` with our URL and another resource's blob id + sha256;
// $binary-access-read / GET Binary then serve those bytes (ContentIo.blobFor checks only the
// hash, never the blob's `owner`). The id + sha256 of a governed Binary's blob leak through
// pass-through reads (instance history, batch), so a caller without read access to the
// securityContext copies the content out.
import t from 'tap';
import { PDF, sha256, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle, direct, locationId, outcome, outcomeCodeOf, uploadGoverned, type Bundle } from './helpers.js';

t.test('reference leaked by Binary history, planted in a DocumentReference created by pass-through', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const secret = PDF(5000);
  const governed = await uploadGoverned(s, secret, 'application/pdf', `Patient/${pid}`);
  // May read Binaries and write DocumentReferences; may not read the Patient.
  const attacker = await s.as('user/Binary.r user/DocumentReference.cru');
  t.same(
    await outcome(fetch(`${s.gw.base}/Binary/${governed}`, { headers: attacker })),
    [403, 'INSUFFICIENT_SCOPE'],
    'the governed Binary itself is refused',
  );

  const histAnswer = await fetch(`${s.gw.base}/Binary/${governed}/_history`, { headers: attacker });
  const histText = await histAnswer.text();
  t.same([histAnswer.status, outcomeCodeOf(histText)], [403, 'INSUFFICIENT_SCOPE'], 'its history is refused too');
  const element = (JSON.parse(histText) as Bundle).entry?.[0]?.resource?._data;
  t.equal(element, undefined, 'the internal blob reference is not shown to a client');

  // Even without the leak: a client-written reference must never be followed.
  const ref =
    element ??
    ((await (await fetch(`${s.up.url}/Binary/${governed}`, { headers: { accept: 'application/fhir+json' } })).json()) as { _data: unknown })
      ._data;
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...attacker, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', _data: ref } }],
    }),
  });
  const createdText = await created.text();
  t.same(
    [created.status, outcomeCodeOf(createdText)],
    [400, 'BAD_REQUEST'],
    'a DocumentReference carrying our blob-reference extension is refused',
  );
  const doc = JSON.parse(createdText) as { id?: string };
  if (!doc.id) return;
  const stolen = await fetch(`${s.gw.base}/DocumentReference/${doc.id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: attacker,
  });
  const bytes = Buffer.from(await stolen.arrayBuffer());
  t.not(sha256(bytes), sha256(secret), 'the governed content is not served through the planted reference');
});

t.test('reference planted in a Binary written in a transaction', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const pid = await direct(s, { resourceType: 'Patient' });
  const secret = PDF(5000);
  const governed = await uploadGoverned(s, secret, 'application/pdf', `Patient/${pid}`);
  const attacker = await s.as('user/Binary.cr');
  const ref = (
    (await (await fetch(`${s.up.url}/Binary/${governed}`, { headers: { accept: 'application/fhir+json' } })).json()) as { _data: unknown }
  )._data;
  const txAnswer = await bundle(
    s,
    attacker,
    [{ request: { method: 'POST', url: 'Binary' }, resource: { resourceType: 'Binary', contentType: 'application/pdf', _data: ref } }],
    'transaction',
  );
  const txText = await txAnswer.text();
  t.same([txAnswer.status, outcomeCodeOf(txText)], [400, 'BAD_BUNDLE'], 'the transaction is refused');
  const id = locationId(JSON.parse(txText) as Bundle);
  t.equal(id, undefined, 'a client-written blob reference in a transaction entry is refused');
  if (!id) return;
  const stolen = await fetch(`${s.gw.base}/Binary/${id}`, { headers: attacker });
  t.not(
    sha256(Buffer.from(await stolen.arrayBuffer())),
    sha256(secret),
    'the governed content is not served through the copy (no securityContext on it)',
  );
});
