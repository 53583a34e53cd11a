// The guard for operation bodies: bytes pass unchanged; attachment data at or above the threshold
// and our blob reference are refused, wherever they sit and however the body is cut.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { operationBodyGuard } from '../../src/rewrite/operation-body-guard.js';
import { pieces } from '../helpers/engine.js';

async function guard(body: string, minBytes: number, cut = 65536): Promise<string> {
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces(Buffer.from(body), cut)), operationBodyGuard(minBytes), async function* (src) {
    for await (const c of src) out.push(c as Buffer);
  });
  return Buffer.concat(out).toString();
}

const params = (data: string, element = 'attachment') =>
  JSON.stringify({
    resourceType: 'Parameters',
    parameter: [
      {
        name: 'resource',
        resource: { resourceType: 'DocumentReference', status: 'current', content: [{ [element]: { contentType: 'text/plain', data } }] },
      },
    ],
  });

t.test('bytes pass unchanged when nothing is at or above the threshold', async (t) => {
  const body = params(Buffer.alloc(99, 'a').toString('base64'));
  for (const cut of [1, 3, 7, 65536]) t.equal(await guard(body, 100, cut), body, `cut at ${cut}`);
});

t.test('the threshold is exact, padding included, whatever the cut', async (t) => {
  for (const n of [98, 99, 100, 101]) {
    const body = params(Buffer.alloc(n, 'b').toString('base64'));
    for (const cut of [1, 5, 65536]) {
      if (n < 100) t.equal(await guard(body, 100, cut), body, `${n} bytes pass`);
      else await t.rejects(guard(body, 100, cut), { code: 'PAYLOAD_TOO_LARGE' }, `${n} bytes refused (cut ${cut})`);
    }
  }
});

t.test('any element counts (Observation.valueAttachment, contained, Bundle entries); SampledData and Signature do not', async (t) => {
  const big = Buffer.alloc(5000, 'c').toString('base64');
  await t.rejects(
    guard(
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'message',
        entry: [{ resource: { resourceType: 'Observation', valueAttachment: { contentType: 'text/plain', data: big } } }],
      }),
      1000,
    ),
    { code: 'PAYLOAD_TOO_LARGE' },
  );
  await t.rejects(
    guard(
      JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'x', valueAttachment: { contentType: 'text/plain', data: big } }] }),
      1000,
    ),
    { code: 'PAYLOAD_TOO_LARGE' },
  );
  const sampled = JSON.stringify({
    resourceType: 'Observation',
    valueSampledData: { data: '1 2 3 '.repeat(2000) },
    component: [{ valueSampledData: { data: '4 5 '.repeat(2000) } }],
    signature: { data: big },
  });
  t.equal(await guard(sampled, 1000), sampled);
});

t.test('our blob reference is refused anywhere; malformed JSON is refused', async (t) => {
  await t.rejects(
    guard(JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'x', valueString: BLOB_EXTENSION_URL }] }), 1000, 3),
    { code: 'BAD_REQUEST' },
  );
  await t.rejects(guard('{"resourceType":"Parameters",', 1000), { code: 'BAD_REQUEST' });
});
