// FINDING (attack round 4 of issue 13, audit; fixed, see test/attack/README.md): `X-File-Metadata: {"purpose": …}` is documented as what an upload is
// FOR (recorded with the blobs a write stores, matched by retention classes), but the audit trail
// takes it from EVERY request (exchange-audit.ts reads uploadPurpose for reads and deletes too)
// and the BALP AuditEvent turns it into `purposeOfEvent`, the purpose of use of the access. Any
// caller can thus label its reads of other people's documents with a purpose of its choosing
// ("TREAT", "break-glass", "court-order"): a client assertion, checked by no one, recorded as a
// fact of the access in the trail an auditor relies on.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

t.test('a read does not carry a purpose of use the client made up into its audit record', async (t) => {
  const s = await stack(t);
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const id = createdId(created);
  const audits = () => s.gw.logs.lines.filter((l) => l['audit'] === 1) as unknown as AuditRecord[];

  const r = await fetch(`${s.gw.base}/Binary/${id}`, {
    headers: { ...s.auth, 'x-file-metadata': JSON.stringify({ purpose: 'break-glass:TREAT' }) },
  });
  t.equal(r.status, 200, 'the read is served');
  await r.arrayBuffer();
  const reqId = r.headers.get('x-request-id');
  await eventually(() => audits().some((a) => a.reqId === reqId), 'audited');
  const rec = audits().find((a) => a.reqId === reqId)!;
  t.equal(rec.action, 'read');
  t.equal(rec.purpose, undefined, `no client-asserted purpose on a read's record (got ${String(rec.purpose)})`);
});
