// FINDING (low): "A reference whose blob is missing ... is answered 500 BLOB_UNREADABLE, never
// with bytes" (docs/binary.md) holds only when the metadata record is gone too. When the record
// is there and the content file is not (a partial restore, a disk error, an operator's mistake),
// ContentIo.serveRaw "opens the blob before the head goes out", but the filesystem driver's
// createReadStream opens lazily: the 200 head is sent, then the ENOENT cuts the connection.
// The error log line ("stored content failed mid-stream") carries no request id either.
import { rmSync } from 'node:fs';
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { uploadGoverned } from './helpers.js';

t.test('a blob whose content file is missing is a 500 BLOB_UNREADABLE, not a 200 cut short', async (t) => {
  const s = await stack(t);
  const id = await uploadGoverned(s, PDF(1000), 'application/pdf');
  for (const f of s.gw.blobFiles()) if (f.endsWith('.blob')) rmSync(`${s.gw.blobDir}/${f}`);
  let status = 0;
  let code: string | undefined;
  try {
    const r = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
    status = r.status;
    code = ((await r.json()) as { issue?: { details: { coding: { code: string }[] } }[] }).issue?.[0]?.details.coding[0]?.code;
  } catch {
    // the connection was cut after the head
  }
  t.equal(status, 500, 'an OperationOutcome status');
  t.equal(code, 'BLOB_UNREADABLE');
  const line = s.gw.logs.lines.find((l) => l['msg'] === 'stored content failed mid-stream');
  if (line) t.ok(line['reqId'], 'a failure log line names its request');
});
