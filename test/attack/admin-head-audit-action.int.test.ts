// FINDING (attack round 4 of issue 13, audit; fixed, see test/attack/README.md): the admin API's records take their action from the method with GET
// as the only read: a HEAD of `/_admin/blobs/{id}` (fastify answers HEAD for every GET route, the
// auth hook runs, the record is found) is recorded as action `update` — and as a BALP Update
// AuditEvent — though nothing changed. An auditor looking for admin changes gets reads, and one
// counting admin reads misses them.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { mintToken } from '../helpers/auth.js';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

t.test('an admin HEAD is audited as a read', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const admin = { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'gateway/admin', sub: 'ops-1' } })}` };
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const blob = (await blobRefOf(s, createdId(created)))!.id;

  const audits = () => s.gw.logs.lines.filter((l) => l['audit'] === 1) as unknown as AuditRecord[];
  for (const method of ['GET', 'HEAD']) {
    const r = await fetch(`${s.gw.url}/_admin/blobs/${blob}`, { method, headers: admin });
    await r.arrayBuffer();
    t.equal(r.status, 200, `${method}: answered`);
    const reqId = r.headers.get('x-request-id');
    await eventually(() => audits().some((a) => a.reqId === reqId), `${method}: audited`);
    const rec = audits().find((a) => a.reqId === reqId)!;
    t.match(rec, { who: { system: 'admin-api', sub: 'ops-1' }, what: { change: 'find' } }, `${method}: the call is named`);
    t.equal(rec.action, 'read', `${method}: recorded as a read, not a change`);
  }
});
