// FINDING: a raw (or FHIR-body) PUT /Binary/{id} checks the securityContext of the version it
// read (guardUpdate), then streams the body, then sends an *unconditional* PUT upstream. A version
// written in between (the owner attaching the Binary to a patient) is overwritten without its
// context ever being checked. $binary-access-write sends If-Match with the version it checked;
// PUT does not. The window is as long as the client takes to send its body.
import { request } from 'node:http';
import t from 'tap';
import { PDF, sha256, stack } from '../helpers/binary-stack.js';
import { direct, outcomeCodeOf, uploadGoverned } from './helpers.js';

/**
 * The PUT checked against version 1 is sent upstream with If-Match: W/"1", which version 2 fails:
 * the upstream's own 412 OperationOutcome is relayed as it came (no gateway catalogue code).
 */
const EXPECTED = [412, undefined];

t.test('a PUT checked against version 1 overwrites a governed version 2', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const id = await uploadGoverned(s, PDF(1000), 'application/pdf');
  const attacker = await s.as('user/Binary.cru');
  const mine = PDF(1000);
  const url = new URL(`${s.gw.base}/Binary/${id}`);
  let statusCode = 0;
  let body = '';
  // Expect: 100-continue makes the window observable: the gateway says Continue only once it has
  // read version 1 and checked it, and then waits for the body as long as the client takes.
  let checked!: () => void;
  const continued = new Promise<void>((r) => (checked = r));
  const req = request({
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'PUT',
    headers: { ...attacker, 'content-type': 'application/pdf', 'content-length': String(mine.length), expect: '100-continue' },
  });
  req.on('continue', () => checked());
  const done = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      statusCode = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        body = Buffer.concat(chunks).toString('utf8');
        resolve();
      });
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  // The gateway has read version 1 (no securityContext), checked it, and is waiting for the body.
  await continued;
  // Meanwhile the owner puts the Binary under a patient (version 2).
  const v2 = PDF(1000);
  const owner = await fetch(`${s.gw.base}/Binary/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/pdf', 'x-security-context': `Patient/${pid}` },
    body: v2,
  });
  await owner.arrayBuffer();
  t.equal(owner.status, 200, 'version 2 is governed by the patient');
  req.end(mine);
  await done;
  t.same([statusCode, outcomeCodeOf(body)], EXPECTED, 'the stale PUT is refused, not applied');
  t.match(JSON.parse(body), { resourceType: 'OperationOutcome', issue: [{ severity: 'error' }] }, 'with the upstream’s OperationOutcome');
  const held = (await (await fetch(`${s.up.url}/Binary/${id}`, { headers: { accept: 'application/fhir+json' } })).json()) as {
    securityContext?: unknown;
  };
  t.same(held.securityContext, { reference: `Patient/${pid}` }, 'the governed version is still current');
  const served = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(sha256(Buffer.from(await served.arrayBuffer())), sha256(v2), 'and serves the owner’s content');
});
