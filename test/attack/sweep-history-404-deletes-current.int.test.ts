// Attack 13b: "a bare 404 proves nothing" was applied to the recheck of linked blobs, but not to
// the reconciliation of pending ones. A blob left pending by an update whose answer was lost
// (intent `Type/id`) is decided by the resource's `_history` alone: an upstream that answers
// instance history 404 (no history support, a layer in front that does not route `_history`)
// is taken as "a complete scan, no version refers to it" and the blob is deleted — while the
// resource's CURRENT version (GET Type/id, never asked) refers to it. The same 404 on a create's
// type search is believed as "none" too.
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, editRecord, hoursAgo, relay, sweepOptions } from '../helpers/lifecycle.js';

t.test('a pending blob the current version refers to is not deleted because `_history` answers 404', async (t) => {
  const s = await stack(t);
  const { id, blob } = await createDocument(s, {}, t);
  // As an update of DocumentReference/{id} whose answer was lost leaves it: pending, intent the resource, 2 h old.
  editRecord(s.gw.blobDir, blob, { state: 'pending', owner: null, intent: `DocumentReference/${id}`, createdAt: hoursAgo(2) });

  // The upstream as the sweeper reaches it: everything relayed, but history is not served (404).
  const base = await relay(t, s.up.url, (req, res) => {
    if (!(req.url ?? '').includes('/_history')) return undefined;
    res.writeHead(404, { 'content-type': 'application/fhir+json' });
    res.end('{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-supported"}]}');
    return 'answered';
  });
  t.equal((await fetch(`${base}/DocumentReference/${id}`)).status, 200, 'the resource itself answers');

  const opts = sweepOptions(t, s.gw.blobDir, base);
  const report = await sweep(opts);
  t.notOk(
    report.deleted.includes(blob),
    `not deleted (report: ${JSON.stringify({ deleted: report.deleted, kept: report.kept, linked: report.linked })})`,
  );
  t.ok(await opts.store.head(blob), 'still in the store');
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: s.auth });
  t.match(await read.json(), { content: [{ attachment: { data: /^JVBER/ } }] }, 'the current version still reads its content');
});
