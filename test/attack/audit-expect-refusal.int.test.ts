// Attack 13c (class: audit-gaps). A Binary request with an Expect the gateway cannot meet is
// answered 417 by the server's `checkExpectation` handler, outside the request flow: it has an
// access log request id but no audit record, though every request for a binary-bearing type,
// refused ones too, is to be one (docs/operations.md, "Audit trail").
import http from 'node:http';
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';

t.test('a Binary upload refused for its Expect header is audited', async (t) => {
  const s = await stack(t);
  const url = new URL(`${s.gw.base}/Binary`);
  const answer = await new Promise<{ status: number; reqId: string | undefined }>((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { ...s.auth, 'content-type': 'application/pdf', 'content-length': '10', expect: '200-ok' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reqId: res.headers['x-request-id'] as string | undefined }));
      },
    );
    req.on('error', reject);
    req.end('%PDF-1.4\n1');
  });
  t.equal(answer.status, 417, 'refused: 417');
  t.ok(answer.reqId, 'with a request id');
  await new Promise((r) => setTimeout(r, 300));
  const rec = s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === answer.reqId);
  t.ok(rec, 'an audit record for the refused Binary request');
  t.match(rec, { outcome: 'refused', status: 417 });
});
