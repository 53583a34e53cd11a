// FINDING (attack round 4 of issue 13, audit; fixed, see test/attack/README.md): BALP AuditEvents are posted as a `batch` Bundle, and a batch is
// answered 200 whatever became of its entries (FHIR R4 §3.1.0.11.2: each entry succeeds or fails
// on its own; a server with per-entry authorization or validation answers `403`/`422` in
// `entry[i].response.status`). The poster looks only at the Bundle's status (fhir-poster.ts
// postBatch), so AuditEvents the FHIR server refused one by one are counted as posted — no warn
// line, no drop count: the trail at the FHIR server silently misses them.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';

t.test('AuditEvents a FHIR server refuses entry by entry are not counted as posted', async (t) => {
  // A FHIR server that takes the batch but refuses every AuditEvent in it (as one whose access
  // policy or profile validation refuses them would).
  let refused = 0;
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const bundle = JSON.parse(Buffer.concat(parts).toString()) as { entry: unknown[] };
      refused += bundle.entry.length;
      res.writeHead(200, { 'content-type': 'application/fhir+json' }).end(
        JSON.stringify({
          resourceType: 'Bundle',
          type: 'batch-response',
          entry: bundle.entry.map(() => ({
            response: {
              status: '403 Forbidden',
              outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'forbidden' }] },
            },
          })),
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;

  const s = await stack(t, { audit: { fhir: { enabled: true, url, batchSize: 1, flushMs: 20 } } });
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const r = await fetch(`${s.gw.base}/Binary/${createdId(created)}`, { headers: s.auth });
  await r.arrayBuffer();
  await eventually(() => refused >= 2, 'the FHIR server got (and refused) the AuditEvents');
  await new Promise((res) => setTimeout(res, 200));
  const warned = s.gw.logs.lines.filter((l) => /audit events/.test(String(l['msg'])));
  t.ok(warned.length > 0, `the refusal is logged (got ${warned.length} lines), as a refused Bundle is`);
});
