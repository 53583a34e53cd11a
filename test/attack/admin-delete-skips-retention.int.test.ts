// Attack 13b: the admin API refuses to delete an `unlinked` blob before its retainUntil ("earlier
// versions still read it"), but the same content escapes that guard when it is still `linked`
// (its resource updated since, the sweeper not yet come by: recheck is up to 24 h away) or when it
// was quarantined first: mayDelete() then only asks whether the owner's CURRENT version refers to
// it, and deletes content an earlier version (vread) still reads and its class (clinical-documents,
// 7 years) keeps.
import t, { type Test } from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { code, stack, type Stack } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders, createDocument, editRecord, hoursAgo, updateDocument } from '../helpers/lifecycle.js';

async function docThenReplaced(t: Test, s: Stack): Promise<{ id: string; blob: string }> {
  const { id, blob } = await createDocument(s, {}, t);
  await updateDocument(t, s, id, { content: [{ attachment: { contentType: 'text/plain', url: 'http://example.org/v2.txt' } }] });
  // Version 1 still reads the PDF through the gateway.
  const v1 = await fetch(`${s.gw.base}/DocumentReference/${id}/_history/1`, { headers: s.auth });
  t.equal(v1.status, 200);
  t.match(await v1.json(), { content: [{ attachment: { data: /^JVBER/ } }] }, 'vread of version 1 serves the content');
  return { id, blob };
}

/** As the sweeper leaves it once its owner's current version no longer refers to it: kept 7 years by its class. */
const unlinkedInClass = () => ({ state: 'unlinked', retention: 'clinical-documents', retainUntil: hoursAgo(-2557 * 24) });

t.test('admin DELETE of content an earlier version still reads, inside its retention class, is refused', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const api = adminApi(s, await adminHeaders(s));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });

  // Control: once the sweeper has unlinked it, a delete is refused (its class keeps it).
  const control = await docThenReplaced(t, s);
  editRecord(s.gw.blobDir, control.blob, unlinkedInClass());
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
  editRecord(s.gw.blobDir, q.blob, unlinkedInClass());
  const quarantined = await api(`/blobs/${q.blob}/quarantine`, { method: 'POST' });
  t.equal(quarantined.status, 200);
  await quarantined.arrayBuffer();
  const r2 = await api(`/blobs/${q.blob}`, { method: 'DELETE' });
  t.equal(r2.status, 409, `unlinked within its class, then quarantined: refused (got ${r2.status})`);
  t.ok(await store.head(q.blob), 'still in the store');
});
