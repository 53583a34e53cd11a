// FINDING: a raw (or FHIR-body) PUT /Binary/{id} checks the securityContext of the version it
// read (guardUpdate), then streams the body, then sends an *unconditional* PUT upstream. A version
// written in between (the owner attaching the Binary to a patient) is overwritten without its
// context ever being checked. $binary-access-write sends If-Match with the version it checked;
// PUT does not. The window is as long as the client takes to send its body.
import { request } from 'node:http';
import t from 'tap';
import { PDF, sha256, stack } from '../helpers/binary-stack.js';
import { direct, uploadGoverned } from './helpers.js';

t.test('a PUT checked against version 1 overwrites a governed version 2', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const id = await uploadGoverned(s, PDF(1000), 'application/pdf');
  const attacker = await s.as('user/Binary.cru');
  const mine = PDF(1000);
  const url = new URL(`${s.gw.base}/Binary/${id}`);
  const reads = () => s.up.requests.filter((r) => r.method === 'GET' && r.url === `/fhir/Binary/${id}`).length;
  const before = reads();
  let statusCode = 0;
  const req = request({
    host: url.hostname,
    port: url.port,
    path: url.pathname,
    method: 'PUT',
    headers: { ...attacker, 'content-type': 'application/pdf', 'content-length': String(mine.length) },
  });
  const done = new Promise<void>((resolve, reject) => {
    req.on('response', (res) => {
      statusCode = res.statusCode ?? 0;
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  // The gateway has read version 1 (no securityContext) and is waiting for the body.
  for (let i = 0; i < 100 && reads() === before; i++) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 100));
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
  t.not(statusCode, 200, 'the stale PUT is refused (412 or 403), not applied');
  const held = (await (await fetch(`${s.up.url}/Binary/${id}`, { headers: { accept: 'application/fhir+json' } })).json()) as {
    securityContext?: unknown;
  };
  t.same(held.securityContext, { reference: `Patient/${pid}` }, 'the governed version is still current');
  const served = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(sha256(Buffer.from(await served.arrayBuffer())), sha256(v2), 'and serves the owner’s content');
});
