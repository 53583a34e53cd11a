// Attack 13b: the admin API refuses to delete an `unlinked` blob before its retainUntil ("earlier
// versions still read it"), but the same content escapes that guard when it is still `linked`
// (its resource updated since, the sweeper not yet come by: recheck is up to 24 h away) or when it
// was quarantined first: mayDelete() then only asks whether the owner's CURRENT version refers to
// it, and deletes content an earlier version (vread) still reads and its class (clinical-documents,
// 7 years) keeps.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { mintToken } from '../helpers/auth.js';
import { code, PDF, stack, type Stack } from '../helpers/binary-stack.js';

async function docThenReplaced(t: Test, s: Stack): Promise<{ id: string; blob: string }> {
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const blob = findBlobRef(held.content[0].attachment._data.extension)!.id;
  const upd = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      id,
      status: 'current',
      content: [{ attachment: { contentType: 'text/plain', url: 'http://example.org/v2.txt' } }],
    }),
  });
  t.equal(upd.status, 200);
  await upd.arrayBuffer();
  // Version 1 still reads the PDF through the gateway.
  const v1 = await fetch(`${s.gw.base}/DocumentReference/${id}/_history/1`, { headers: s.auth });
  t.equal(v1.status, 200);
  t.match(await v1.json(), { content: [{ attachment: { data: /^JVBER/ } }] }, 'vread of version 1 serves the content');
  return { id, blob };
}

t.test('admin DELETE of content an earlier version still reads, inside its retention class, is refused', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const admin = { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'gateway/admin', sub: 'ops-1' } })}` };
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${s.gw.url}/_admin${path}`, { ...init, headers: { ...admin, ...(init.headers as Record<string, string>) } });
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });

  // Control: once the sweeper has unlinked it, a delete is refused (its class keeps it).
  const control = await docThenReplaced(t, s);
  const rec = join(s.gw.blobDir, control.blob.slice(0, 2), control.blob.slice(2, 4), `${control.blob}.json`);
  writeFileSync(
    rec,
    JSON.stringify({
      ...JSON.parse(readFileSync(rec, 'utf8')),
      state: 'unlinked',
      retention: 'clinical-documents',
      retainUntil: new Date(Date.now() + 2557 * 86_400_000).toISOString(),
    }),
  );
  const refused = await api(`/blobs/${control.blob}`, { method: 'DELETE' });
  t.same([refused.status, await code(refused)], [409, 'BLOB_IN_USE'], 'control: unlinked, kept by its class');

  // The same situation before the sweeper came by: still "linked".
  const linked = await docThenReplaced(t, s);
  t.match(await store.head(linked.blob), { state: 'linked' });
  const r1 = await api(`/blobs/${linked.blob}`, { method: 'DELETE' });
  t.equal(r1.status, 409, `linked, owner's current version elsewhere, version 1 reads it: refused (got ${r1.status})`);
  t.ok(await store.head(linked.blob), 'still in the store');

  // Quarantined first (state no longer "unlinked"): the class no longer protects it.
  const q = await docThenReplaced(t, s);
  const qrec = join(s.gw.blobDir, q.blob.slice(0, 2), q.blob.slice(2, 4), `${q.blob}.json`);
  writeFileSync(
    qrec,
    JSON.stringify({
      ...JSON.parse(readFileSync(qrec, 'utf8')),
      state: 'unlinked',
      retention: 'clinical-documents',
      retainUntil: new Date(Date.now() + 2557 * 86_400_000).toISOString(),
    }),
  );
  const quarantined = await api(`/blobs/${q.blob}/quarantine`, { method: 'POST' });
  t.equal(quarantined.status, 200);
  await quarantined.arrayBuffer();
  const r2 = await api(`/blobs/${q.blob}`, { method: 'DELETE' });
  t.equal(r2.status, 409, `unlinked within its class, then quarantined: refused (got ${r2.status})`);
  t.ok(await store.head(q.blob), 'still in the store');
});
