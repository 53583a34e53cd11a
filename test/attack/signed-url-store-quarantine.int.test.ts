// FINDING (signed URLs review, fixed): a quarantine did not withdraw content from store URLs issued
// before it: an S3 presigned URL (`$file-url?via=store`) went on serving the quarantined bytes
// straight from the bucket, and nothing said so. No store can withdraw a URL it already signed
// (S3 has no per-object revocation; an Azure SAS outlives a record change): that is now a named gap,
// `withdraw`, which every store URL needs and an operator must accept (signedUrls.store.acceptGaps)
// before the gateway issues one. The gateway's own URL re-reads the blob's record and is refused.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders } from '../helpers/lifecycle.js';
import { s3Storage, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome } from './helpers.js';

t.test(
  'S3: store URLs outlive a quarantine, so they are refused unless that gap is accepted; the gateway URL is withdrawn at once',
  async (t) => {
    const { storage } = await s3Storage(t);
    const s = await stack(t, { admin: { enabled: true }, storage, signedUrls: signedUrlsConfig(urlKeys(t), { store: { enabled: true } }) });
    const c = await fetch(`${s.gw.base}/Binary`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/pdf' },
      body: PDF(90_000),
    });
    await c.arrayBuffer();
    const id = (c.headers.get('location') ?? '').split('/')[5];

    // Not accepted: refused, naming the gap.
    const refused = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store`, { headers: s.auth });
    t.equal(refused.status, 400);
    t.match(await refused.text(), /withdrawal \(withdraw/, 'a store URL would outlive a quarantine: refused unless accepted');

    const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url`, { headers: s.auth });
    const p = (await r.json()) as { parameter: { name: string; valueUrl?: string }[] };
    const own = p.parameter.find((x) => x.name === 'url')!.valueUrl!.replace('http://gateway.test', s.gw.url);
    const blob = new URL(own).pathname.split('/').pop()!;
    const before = await fetch(own);
    await before.arrayBuffer();
    t.equal(before.status, 200, "the gateway's own URL serves before the quarantine");

    const api = adminApi(s, await adminHeaders(s));
    const q = await api(`/blobs/${blob}/quarantine`, { method: 'POST' });
    t.equal(q.status, 200, 'quarantined');
    await q.arrayBuffer();
    t.same(await outcome(fetch(own)), [404, 'NOT_FOUND'], "the gateway's own URL is refused at once");
  },
);
