// FINDING (low): a deeply nested held member (`size`, `hash`, `_data`) is assembled without the
// MAX_DEPTH bound the streamed path has, and later JSON.stringify()'d: the RangeError (stack
// overflow) becomes 503 STORAGE_UNAVAILABLE ("The object store could not be reached"), because
// Externalizer.fail() maps every non-GatewayError to STORAGE_UNAVAILABLE, and nothing is logged.
// A client's malformed body reads as a storage outage to monitoring, and clients retry it.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

t.test('a deeply nested held member is a 400, not a storage outage', async (t) => {
  const s = await stack(t);
  const deep = '['.repeat(20_000) + ']'.repeat(20_000);
  const body = `{"resourceType":"Binary","contentType":"text/plain","data":"aGk=","meta":{"extension":[{"url":"x","valueAttachment":{"contentType":"text/plain","size":${deep}}}]}}`;
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/fhir+json' }, body });
  t.same(await outcome(r), [400, 'BAD_REQUEST'], 'refused as malformed, not blamed on the store (503 STORAGE_UNAVAILABLE)');
});
