// "Request sent, answer lost" is not "upstream unreachable" (issue 13): when the upstream stores a
// Binary and its answer never arrives (the connection drops, or it comes after upstream.timeoutMs),
// the client gets 502/504, the blob stays pending instead of being deleted, and a sweep links it,
// after which the Binary reads whole. A write the upstream never got still leaves nothing.
import t, { type Test } from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { PDF } from '../helpers/binary-stack.js';
import { startTestGateway } from '../helpers/gateway.js';
import { pdfDocument, relay, sweepAt, sweepOptions } from '../helpers/lifecycle.js';
import { eventually } from '../helpers/poll.js';
import { closedPort } from '../helpers/raw-http.js';
import { midHour } from '../helpers/retention.js';
import { startUpstream } from '../helpers/upstream.js';

type Fate = 'drop' | 'late';

/** In front of the real upstream: writes reach it whole; their answers are dropped, or sent after `lateMs`. */
const losingShim = (t: Test, upstream: string, fate: Fate, lateMs = 0): Promise<string> =>
  relay(t, upstream, (req) =>
    req.method !== 'POST'
      ? undefined
      : {
          answer: (answer, res) => {
            answer.resume();
            answer.on('end', () => {
              // The upstream has stored it; the gateway never hears so (in time).
              if (fate === 'drop') res.socket?.destroy();
              else setTimeout(() => res.socket?.destroy(), lateMs);
            });
          },
        },
  );

for (const [fate, status, code] of [
  ['drop', 502, 'UPSTREAM_UNAVAILABLE'],
  ['late', 504, 'UPSTREAM_TIMEOUT'],
] as const) {
  t.test(`answer ${fate === 'drop' ? 'lost' : 'too late'}: ${status}, the blob kept pending, then linked by a sweep`, async (t) => {
    const up = await startUpstream(t);
    const key = await makeKey('k1');
    const jwks = await startJwksServer(t, [key]);
    const gw = await startTestGateway(t, {
      upstream: await losingShim(t, up.url, fate, 3000),
      jwksUri: jwks.url,
      config: { upstream: { timeoutMs: 1000 } },
    });
    const auth = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/*.cruds' } })}` };
    const pdf = PDF(100_000);
    const r = await fetch(`${gw.base}/Binary`, { method: 'POST', headers: { ...auth, 'content-type': 'application/pdf' }, body: pdf });
    const body = (await r.json()) as { issue: { details: { coding: { code: string }[] } }[] };
    t.same([r.status, body.issue[0].details.coding[0].code], [status, code], 'the client hears the failure');

    const store = new FilesystemBlobStore({ directory: gw.blobDir });
    const pending = await eventually(async () => (await store.list()).items.find((i) => i.state === 'pending'), 'the blob, pending');
    t.match(pending, { intent: 'Binary', state: 'pending' }, 'kept, not deleted: the upstream may hold it');
    const held = (await (await fetch(`${up.url}/Binary`)).json()) as { entry?: { resource: { id: string } }[] };
    t.equal(held.entry?.length, 1, 'the upstream did store the Binary');
    const id = held.entry![0].resource.id;
    t.ok(
      gw.logs.lines.some((l) => l['msg'] === 'upstream write outcome unknown: blobs left pending for the sweeper to reconcile'),
      'logged',
    );

    const report = await sweepAt(sweepOptions(t, store, up.url, { spoolDir: gw.spoolDir }), midHour(2));
    t.same(report.linked, [{ id: pending.id, owner: `Binary/${id}` }], 'the sweep links it to the Binary the upstream holds');
    const back = await fetch(`${gw.base}/Binary/${id}`, { headers: auth });
    t.equal(back.status, 200);
    t.ok(Buffer.from(await back.arrayBuffer()).equals(pdf), 'and the Binary reads whole');
  });
}

t.test('a write the upstream never got (connection refused) leaves no blob', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: `http://127.0.0.1:${await closedPort()}/fhir`, jwksUri: jwks.url });
  const auth = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/*.cruds' } })}` };
  const r = await fetch(`${gw.base}/Binary`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/pdf' },
    body: PDF(100_000),
  });
  t.equal(r.status, 502);
  await r.arrayBuffer();
  t.same(gw.blobFiles(), [], 'nothing kept');
});

t.test('a Bundle whose answer is lost: its blobs learn their entry’s type and a sweep links them', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: await losingShim(t, up.url, 'drop'), jwksUri: jwks.url });
  const auth = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/*.cruds' } })}` };
  const r = await fetch(gw.base, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          request: { method: 'POST', url: 'DocumentReference' },
          resource: pdfDocument({}, 100_000),
        },
      ],
    }),
  });
  t.equal(r.status, 502);
  await r.arrayBuffer();
  const store = new FilesystemBlobStore({ directory: gw.blobDir });
  const pending = await eventually(
    async () => (await store.list()).items.find((i) => i.state === 'pending' && i.intent),
    'the blob, tagged',
  );
  t.match(pending, { intent: 'DocumentReference' });
  const report = await sweepAt(sweepOptions(t, store, up.url, { spoolDir: gw.spoolDir }), midHour(2));
  t.match(report.linked, [{ id: pending.id, owner: /^DocumentReference\// }], 'linked to the DocumentReference the upstream holds');
});
