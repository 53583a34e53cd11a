// Attack 13b: an empty Binary stored in the object store (a raw upload of zero bytes as text/plain)
// reads fine raw, but its FHIR JSON view never answers: RawResponder.open() waits for the first
// bytes of the store's (empty, already ended) stream with firstBytes(), which listens for
// 'readable' only — an ended empty stream never emits it, so the exchange hangs (the client, its
// socket and the audit record wait until a timeout cuts it).
import t from 'tap';
import { blobRefOf, createdId, stack, upload } from '../helpers/binary-stack.js';

t.test('the FHIR JSON view of an empty stored Binary is answered', async (t) => {
  const s = await stack(t);
  const r = await upload(s, Buffer.alloc(0), 'text/plain');
  await r.arrayBuffer();
  t.equal(r.status, 201, 'an empty upload is accepted');
  const id = createdId(r);
  t.ok(await blobRefOf(s, id), 'its (empty) content is in the store');
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth, signal: AbortSignal.timeout(5000) });
  t.same([raw.status, (await raw.arrayBuffer()).byteLength], [200, 0], 'raw: an empty 200');
  let status: number | string;
  try {
    const view = await fetch(`${s.gw.base}/Binary/${id}`, {
      headers: { ...s.auth, accept: 'application/fhir+json' },
      signal: AbortSignal.timeout(5000),
    });
    status = view.status;
    t.match(await view.json(), { resourceType: 'Binary', contentType: 'text/plain' });
  } catch (err) {
    status = (err as Error).name;
  }
  t.equal(status, 200, 'the FHIR JSON view answers within 5 s');
});
