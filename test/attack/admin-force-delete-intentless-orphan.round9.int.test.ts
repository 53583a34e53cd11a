// Fixed: a forced admin delete removes a blob with neither owner nor intent (admin-api.ts mayDelete), audited as forced.
// Round 9: a blob left `pending` with neither owner nor intent — a Bundle's blobs are stored while
// it streams, with no intent (blob-lifecycle.ts intentOf), and learn one only in intend() after the
// upstream answered: a gateway that dies in between (deploy, OOM, SIGKILL), or a store that refuses
// intend()'s setMeta, leaves them so — can never be reconciled: every sweep "keeps" it ("no record
// of what it was written for"), and docs/operations.md says `?force=true` lifts "not one with
// neither owner nor intent" for the operator, but admin-api.ts mayDelete() refuses it even forced
// (BLOB_IN_USE). The content (PHI) then outlives every retention class, and the store fills.
import { Readable } from 'node:stream';
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { code, PDF, stack } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders, editRecord, hoursAgo } from '../helpers/lifecycle.js';

t.test('a pending blob with no owner and no intent can be deleted by a forced admin delete', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const api = adminApi(s, await adminHeaders(s));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  // As a Bundle write leaves its blob when the gateway stops between storing and intend().
  const orphan = (await store.put(Readable.from([PDF(100)]), { contentType: 'application/pdf' })).id;
  editRecord(s.gw.blobDir, orphan, { createdAt: hoursAgo(48) });

  const plain = await api(`/blobs/${orphan}`, { method: 'DELETE' });
  t.same([plain.status, await code(plain)], [409, 'BLOB_IN_USE'], 'control: not without force');

  const forced = await api(`/blobs/${orphan}?force=true`, { method: 'DELETE' });
  const body = forced.status === 204 ? '' : await forced.text();
  t.equal(
    forced.status,
    204,
    `forced: the operator's decision removes an orphan nothing can reconcile (got ${forced.status} ${body.slice(0, 200)})`,
  );
  t.equal(await store.head(orphan), undefined, 'gone from the store');
});
