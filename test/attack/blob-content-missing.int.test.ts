// FINDING (low): "A reference whose blob is missing ... is answered 500 BLOB_UNREADABLE, never
// with bytes" (docs/binary.md) holds only when the metadata record is gone too. When the record
// is there and the content file is not (a partial restore, a disk error, an operator's mistake),
// ContentIo.serveRaw "opens the blob before the head goes out", but the filesystem driver's
// createReadStream opens lazily: the 200 head is sent, then the ENOENT cuts the connection.
// The error log line ("stored content failed mid-stream") carries no request id either.
import { rmSync } from 'node:fs';
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { outcomeCodeOf, uploadGoverned } from './helpers.js';

t.test('a blob whose content file is missing is a 500 BLOB_UNREADABLE, not a 200 cut short', async (t) => {
  const s = await stack(t);
  const id = await uploadGoverned(s, PDF(1000), 'application/pdf');
  for (const f of s.gw.blobFiles()) if (f.endsWith('.blob')) rmSync(`${s.gw.blobDir}/${f}`);
  let status = 0;
  let code: string | undefined;
  let reqId: string | null = null;
  try {
    const r = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
    status = r.status;
    reqId = r.headers.get('x-request-id');
    code = outcomeCodeOf(await r.text());
  } catch {
    // the connection was cut after the head
  }
  t.same([status, code], [500, 'BLOB_UNREADABLE'], 'an OperationOutcome before any byte, not a 200 cut short');
  t.match(await s.gw.accessLine(reqId), { status: 500, code: 'BLOB_UNREADABLE' }, 'the failure is logged under its request id');
  const unnamed = s.gw.logs.lines.filter((l) => l['level'] === 'error' && l['reqId'] !== reqId);
  t.same(unnamed, [], 'no error line without the request id');
});
