// Attack 13c (class: admin API acting wrongly / sweeper "never changes a blob changed meanwhile").
// An operator quarantines a blob while its write is still waiting for the upstream's answer (it is
// `pending`, listed by `GET /_admin/blobs?state=pending`). When the answer comes, the write path
// (BlobLifecycle.link) sets `state: linked` over the quarantine without reading it: the withdrawn
// content is served again and the operator's decision is silently undone. The sweeper re-reads a
// record before changing it; the write path does not.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders, passOn, postDocument, relay } from '../helpers/lifecycle.js';

t.test('a blob quarantined while its write waits for the upstream stays quarantined', async (t) => {
  // The upstream's answer to the create comes 2 s late: the blob waits, pending, meanwhile.
  const s = await stack(t, { admin: { enabled: true } }, (up) =>
    relay(t, up.url, (req) =>
      req.method === 'POST' && /\/DocumentReference\/?$/.test(req.url ?? '')
        ? { answer: (answer, res) => setTimeout(() => passOn(answer, res), 2000) }
        : undefined,
    ),
  );
  const api = adminApi(s, await adminHeaders(s));

  const write = postDocument(s);
  // The operator sees it pending (a scanner flagged it) and withdraws it.
  let blob: string | undefined;
  for (let i = 0; i < 100 && !blob; i++) {
    const list = (await (await api('/blobs?state=pending')).json()) as { items: { id: string }[] };
    blob = list.items[0]?.id;
    if (!blob) await new Promise((r) => setTimeout(r, 20));
  }
  t.ok(blob, 'the blob is listed as pending while the upstream has not answered');
  const q = await api(`/blobs/${blob}/quarantine`, { method: 'POST' });
  t.equal(q.status, 200, 'quarantined');
  await q.arrayBuffer();

  const created = await write;
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const rec = (await (await api(`/blobs/${blob}`)).json()) as { blob: { state: string } };
  t.equal(rec.blob.state, 'quarantined', 'still quarantined after the write linked it');
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: s.auth });
  const text = await read.text();
  t.notOk(text.includes('"data":"JVBER'), 'the quarantined content is not served');
});
