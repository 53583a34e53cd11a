// The admin API (issue 13) against the real FHIR upstream: find a blob by id, list by state, link
// one whose link was lost to the resource that refers to it (never to one that does not),
// quarantine and release, delete only what no resource refers to; its own scope, optionally its
// own listener; every call audited.
import { Readable } from 'node:stream';
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { mintToken } from '../helpers/auth.js';
import { code, PDF, stack, uploadPdf } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders, editRecord, hoursAgo, postDocument } from '../helpers/lifecycle.js';
import { eventually } from '../helpers/poll.js';

t.test('find, list, link by hand, quarantine, release and delete, each checked and audited', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const api = adminApi(s, await adminHeaders(s));
  const json = async (r: Response) => (await r.json()) as Record<string, any>;

  const { id: binaryId, blob } = await uploadPdf(s);

  // Find by id ("search storage by fileId").
  const found = await api(`/blobs/${blob}`);
  t.equal(found.status, 200);
  t.match(await json(found), {
    blob: { id: blob, state: 'linked', owner: `Binary/${binaryId}`, contentType: 'application/pdf', sha256: /^[0-9a-f]{64}$/ },
  });
  t.equal((await api('/blobs/0123456789abcdef0123456789abcdef')).status, 404, 'an unknown id');
  t.equal((await api('/blobs/..%2F..%2Fetc')).status, 404, 'not an id');

  // Refused without the scope, without a token.
  const other = { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'user/*.cruds', sub: 'clinician' } })}` };
  const refused = await fetch(`${s.gw.url}/_admin/blobs/${blob}`, { headers: other });
  t.equal(refused.status, 403);
  t.equal(await code(refused), 'INSUFFICIENT_SCOPE');
  const none = await fetch(`${s.gw.url}/_admin/blobs/${blob}`);
  t.equal(none.status, 401);
  await none.arrayBuffer();

  // The link lost (as an answer lost on the way leaves it): pending, no owner.
  editRecord(s.gw.blobDir, blob, { state: 'pending', owner: null });
  const unreadable = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: s.auth });
  t.equal(unreadable.status, 500, 'a pending blob is not served');
  await unreadable.arrayBuffer();
  const pendingList = await json(await api('/blobs?state=pending'));
  t.same(
    pendingList.items.map((i: { id: string }) => i.id),
    [blob],
    'listed as pending',
  );
  t.equal((await api('/blobs?state=bogus')).status, 400);
  t.equal((await api('/blobs?cursor=..%2F..%2Fetc%00')).status, 400, 'not a cursor');
  t.equal((await api('/blobs?limit=0')).status, 400);
  t.same((await json(await api(`/blobs?cursor=${blob}`))).items, [], 'a page after the last id');

  // Linked by hand: never to a resource that does not refer to it.
  const doc = await postDocument(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { url: 'http://example.org/x.pdf' } }],
  });
  const docId = ((await doc.json()) as { id: string }).id;
  const wrong = await api(`/blobs/${blob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resource: `DocumentReference/${docId}` }),
  });
  t.equal(wrong.status, 409);
  t.equal(await code(wrong), 'LINK_UNVERIFIED');
  const bad = await api(`/blobs/${blob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"resource":"../x"}',
  });
  t.equal(bad.status, 400);
  await bad.arrayBuffer();
  const notJson = await api(`/blobs/${blob}/link`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
  t.equal(notJson.status, 400, 'a body that is not JSON');
  await notJson.arrayBuffer();
  const linked = await api(`/blobs/${blob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resource: `Binary/${binaryId}` }),
  });
  t.equal(linked.status, 200);
  t.match(await json(linked), { blob: { state: 'linked', owner: `Binary/${binaryId}` } });
  const readable = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(readable.status, 200, 'served again');
  await readable.arrayBuffer();

  // Quarantined: not served until released.
  t.equal((await api(`/blobs/${blob}/quarantine`, { method: 'POST' })).status, 200);
  const held = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(held.status, 500);
  t.equal(await code(held), 'BLOB_UNREADABLE');
  t.equal(
    (
      await api(`/blobs/${blob}/link`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ resource: `Binary/${binaryId}` }),
      })
    ).status,
    409,
    'a quarantined blob is not linked',
  );
  t.match(await json(await api(`/blobs/${blob}/release`, { method: 'POST' })), { blob: { state: 'linked' } });
  t.equal((await api(`/blobs/${blob}/release`, { method: 'POST' })).status, 400, 'not quarantined');
  const back = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(back.status, 200);
  await back.arrayBuffer();

  // Deleted only once no resource refers to it.
  const inUse = await api(`/blobs/${blob}`, { method: 'DELETE' });
  t.equal(inUse.status, 409);
  t.equal(await code(inUse), 'BLOB_IN_USE');
  const gone = await fetch(`${s.gw.base}/Binary/${binaryId}`, { method: 'DELETE', headers: s.auth });
  await gone.arrayBuffer();
  const unclassed = await api(`/blobs/${blob}`, { method: 'DELETE' });
  t.equal(unclassed.status, 409, 'linked, not yet unlinked and classed by the sweeper');
  await unclassed.arrayBuffer();
  t.equal((await api(`/blobs/${blob}?force=true`, { method: 'DELETE' })).status, 204, 'forced, once nothing refers to it');
  t.equal((await api(`/blobs/${blob}`)).status, 404, 'gone from the store');

  // Every call audited, the refused ones too, with who.
  const audits = await eventually(() => {
    const list = s.gw.logs.lines.filter((l) => l['audit'] === 1 && (l['who'] as { system?: string }).system === 'admin-api');
    return list.length >= 14 ? list : undefined;
  }, 'the admin audit records');
  const changes = audits.map((a) => `${(a['what'] as { change: string }).change} ${String(a['status'])}`);
  for (const c of [
    'find 200',
    'find 404',
    'list pending 200',
    'link 409',
    'link 200',
    'quarantine 200',
    'release 200',
    'delete 409',
    'delete forced 204',
  ])
    t.ok(changes.includes(c), `audited: ${c}`);
  t.ok(
    audits.some(
      (a) => a['outcome'] === 'refused' && a['code'] === 'INSUFFICIENT_SCOPE' && (a['who'] as { sub?: string }).sub === 'clinician',
    ),
    'the refused call, with who tried',
  );
  t.ok(audits.filter((a) => a['status'] === 200).every((a) => (a['who'] as { sub?: string }).sub === 'ops-1'));
});

t.test('on its own listener, the admin API is not on the main one; ipAllow holds', async (t) => {
  const s = await stack(t, { admin: { enabled: true, listen: { port: 0 } } });
  const admin = await adminHeaders(s, {});
  t.ok(s.gw.adminUrl, 'listening');
  const list = await fetch(`${s.gw.adminUrl}/_admin/blobs`, { headers: admin });
  t.equal(list.status, 200);
  t.same(await list.json(), { items: [] });
  const main = await fetch(`${s.gw.url}/_admin/blobs`, { headers: admin });
  t.not(main.status, 200, 'not served on the main listener');
  await main.arrayBuffer();

  const fenced = await stack(t, { admin: { enabled: true, ipAllow: ['10.0.0.0/8'] } });
  const token = await adminHeaders(fenced, {});
  const r = await fetch(`${fenced.gw.url}/_admin/blobs`, { headers: token });
  t.equal(r.status, 403);
  t.equal(await code(r), 'FORBIDDEN');
});

t.test('admin disabled: /_admin is not served', async (t) => {
  const s = await stack(t);
  const admin = await adminHeaders(s, {});
  const r = await fetch(`${s.gw.url}/_admin/blobs`, { headers: admin });
  t.equal(r.status, 404);
  await r.arrayBuffer();
});

t.test('a blob a resource may still refer to is not deleted nor taken away by hand', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const api = adminApi(s, await adminHeaders(s, {}));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const patch = (id: string, over: Record<string, unknown>) => editRecord(s.gw.blobDir, id, over);
  const refusal = async (r: Response) => [r.status, await code(r)];

  // Pending and young: its write may be in flight.
  const young = (await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf', intent: 'Binary' })).id;
  t.same(await refusal(await api(`/blobs/${young}`, { method: 'DELETE' })), [409, 'BLOB_IN_USE'], 'pending within its grace');
  // Pending, old, with nothing to ask about.
  const mute = (await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf' })).id;
  patch(mute, { createdAt: hoursAgo(2) });
  t.same(await refusal(await api(`/blobs/${mute}`, { method: 'DELETE' })), [409, 'BLOB_IN_USE'], 'pending with no intent');
  // Pending, old, its intent answered "none": goes.
  patch(young, { createdAt: hoursAgo(2) });
  t.equal((await api(`/blobs/${young}`, { method: 'DELETE' })).status, 204, 'an old orphan goes');

  // Unlinked but kept by its class: earlier versions still read it.
  const { id: binaryId, blob } = await uploadPdf(s);
  const del = await fetch(`${s.gw.base}/Binary/${binaryId}`, { method: 'DELETE', headers: s.auth });
  await del.arrayBuffer();
  patch(blob, { state: 'unlinked', retention: 'clinical-documents', retainUntil: new Date(Date.now() + 86_400_000).toISOString() });
  const kept = await api(`/blobs/${blob}`, { method: 'DELETE' });
  t.same(await refusal(kept), [409, 'BLOB_IN_USE'], 'unlinked within its class');

  // Never taken away from the owner that still refers to it.
  const { id: otherId, blob: otherBlob } = await uploadPdf(s);
  const taken = await api(`/blobs/${otherBlob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resource: `Binary/${binaryId}` }),
  });
  t.same(await refusal(taken), [409, 'LINK_UNVERIFIED']);
  const dot = await api(`/blobs/${otherBlob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"resource":"Binary/."}',
  });
  t.equal(dot.status, 400, 'not a resource');
  await dot.arrayBuffer();
  t.match(await store.head(otherBlob), { state: 'linked', owner: `Binary/${otherId}` });
});
