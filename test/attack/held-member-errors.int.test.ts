// FINDING (low): a deeply nested held member (`size`, `hash`, `_data`) is assembled without the
// MAX_DEPTH bound the streamed path has, and later JSON.stringify()'d: the RangeError (stack
// overflow) becomes 503 STORAGE_UNAVAILABLE ("The object store could not be reached"), because
// Externalizer.fail() maps every non-GatewayError to STORAGE_UNAVAILABLE, and nothing is logged.
// A client's malformed body reads as a storage outage to monitoring, and clients retry it.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';

t.test('a deeply nested held member is a 400, not a storage outage', async (t) => {
  const s = await stack(t);
  const deep = '['.repeat(20_000) + ']'.repeat(20_000);
  const body = `{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","meta":{"extension":[{"url":"x","valueAttachment":{"contentType":"text/plain","size":${deep}}}]}}`;
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/fhir+json' }, body });
  const oo = (await r.json()) as { issue: { details: { coding: { code: string }[] } }[] };
  t.equal(r.status, 400, 'refused as malformed');
  t.not(oo.issue[0]?.details.coding[0]?.code, 'STORAGE_UNAVAILABLE', 'not blamed on the store');
});
