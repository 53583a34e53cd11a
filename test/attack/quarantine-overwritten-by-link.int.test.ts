// Attack 13c (class: admin API acting wrongly / sweeper "never changes a blob changed meanwhile").
// An operator quarantines a blob while its write is still waiting for the upstream's answer (it is
// `pending`, listed by `GET /_admin/blobs?state=pending`). When the answer comes, the write path
// (BlobLifecycle.link) sets `state: linked` over the quarantine without reading it: the withdrawn
// content is served again and the operator's decision is silently undone. The sweeper re-reads a
// record before changing it; the write path does not.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, stack } from '../helpers/binary-stack.js';

t.test('a blob quarantined while its write waits for the upstream stays quarantined', async (t) => {
  const s = await stack(t, { admin: { enabled: true } }, async (up) => {
    const upstream = new URL(up.url);
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const slow = req.method === 'POST' && /\/DocumentReference\/?$/.test(req.url ?? '');
      const fwd = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          path: req.url,
          method: req.method,
          headers: { ...req.headers, host: upstream.host },
        },
        (answer) => {
          const relay = () => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          };
          if (slow) setTimeout(relay, 2000);
          else relay();
        },
      );
      req.pipe(fwd);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`;
  });
  const admin = { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'gateway/admin', sub: 'ops-1' } })}` };

  const write = fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  // The operator sees it pending (a scanner flagged it) and withdraws it.
  let blob: string | undefined;
  for (let i = 0; i < 100 && !blob; i++) {
    const list = (await (await fetch(`${s.gw.url}/_admin/blobs?state=pending`, { headers: admin })).json()) as { items: { id: string }[] };
    blob = list.items[0]?.id;
    if (!blob) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(blob, 'the blob is listed as pending while the upstream has not answered');
  const q = await fetch(`${s.gw.url}/_admin/blobs/${blob}/quarantine`, { method: 'POST', headers: admin });
  t.equal(q.status, 200, 'quarantined');
  await q.arrayBuffer();

  const created = await write;
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const rec = (await (await fetch(`${s.gw.url}/_admin/blobs/${blob}`, { headers: admin })).json()) as { blob: { state: string } };
  t.equal(rec.blob.state, 'quarantined', 'still quarantined after the write linked it');
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: s.auth });
  const text = await read.text();
  t.notOk(text.includes('"data":"JVBER'), 'the quarantined content is not served');
});
