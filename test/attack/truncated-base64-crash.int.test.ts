// FINDING (high, found by differential review of the redesign, present before it too): one request
// took the gateway down. A FHIR JSON Binary body (or any attachment at or above
// externalize.minBytes) whose base64 ends in a truncated group, e.g. `"data":"aGVsbG8gd29ybGQ"`,
// made DataSink start a put and then abort it before the store had attached its listeners: the
// abort's 'error' event had no listener, and an unheard 'error' is fatal in Node. Every client
// lost its connection. Now the refusal is an ordinary 400 and the gateway keeps serving.
import t from 'tap';
import { code, stack, type Stack } from '../helpers/binary-stack.js';
import { settled } from '../helpers/poll.js';

async function post(s: Stack, path: string, body: unknown): Promise<Response> {
  return fetch(`${s.gw.base}/${path}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(body),
  });
}

t.test('attachment data that stops mid-group is a 400, never a crash', async (t) => {
  const s = await stack(t, { externalize: { minBytes: 16 } });
  const text = Buffer.from('hello world, this is plain text long enough to be stored').toString('base64');
  const cases: [string, string, Record<string, unknown>][] = [
    ['FHIR Binary, padding missing', 'Binary', { resourceType: 'Binary', contentType: 'text/plain', data: 'aGVsbG8gd29ybGQ' }],
    ['FHIR Binary, one character short', 'Binary', { resourceType: 'Binary', contentType: 'text/plain', data: text.slice(0, -1) }],
    ['FHIR Binary, a stray character at the end', 'Binary', { resourceType: 'Binary', contentType: 'text/plain', data: `${text}*` }],
    [
      'DocumentReference attachment above minBytes',
      'DocumentReference',
      {
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'text/plain', data: text.slice(0, -2) } }],
      },
    ],
  ];
  for (const [name, path, body] of cases) {
    const r = await post(s, path, body);
    t.equal(r.status, 400, `${name}: refused`);
    t.equal(await code(r), 'BAD_REQUEST', `${name}: as invalid base64`);
    const health = await fetch(`${s.gw.url}/healthz`);
    t.equal(health.status, 200, `${name}: the gateway is still up`);
    await health.arrayBuffer();
  }
  t.same(await settled(() => s.gw.blobFiles(), []), [], 'no blob, no temp file left');
  const ok = await post(s, 'Binary', { resourceType: 'Binary', contentType: 'text/plain', data: text });
  t.equal(ok.status, 201, 'and a well-formed body is stored as before');
  await ok.arrayBuffer();
});
