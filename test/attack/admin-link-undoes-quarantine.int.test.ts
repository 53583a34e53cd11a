// FINDING (attack round 5, admin API races): `POST /_admin/blobs/{id}/link` reads the blob's
// record, checks it is not quarantined, asks the FHIR server whether the resource refers to it
// (one or two round trips), then writes `state: linked` over whatever the record says by then.
// A quarantine made while the FHIR server answered (another operator, a scanner's automation) is
// silently undone: the 200 of the quarantine said "withdrawn", the content is served again. The
// write path was fixed for this (quarantine-overwritten-by-link, BlobLifecycle.link re-reads);
// the admin link, the release and the delete write blind.
//
// Fixed (round 5): link, release and delete read the record again after the FHIR server answered
// and refuse with 409 BLOB_CHANGED when its state or updatedAt changed; the forced delete below is
// the same race on the other call that asks the FHIR server first.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { adminApi, adminHeaders, createDocument, passOn, relay, updateDocument } from '../helpers/lifecycle.js';
import { outcomeCodeOf } from './helpers.js';

t.test('a blob quarantined while an admin link waits for the FHIR server stays quarantined', async (t) => {
  let slow = false;
  const s = await stack(t, { admin: { enabled: true } }, (up) =>
    relay(t, up.url, (req) =>
      slow && req.method === 'GET' && /\/DocumentReference\/[^/?]+/.test(req.url ?? '')
        ? { answer: (answer, res) => setTimeout(() => passOn(answer, res), 1500) }
        : undefined,
    ),
  );
  const api = adminApi(s, await adminHeaders(s));
  const { id, blob } = await createDocument(s, {}, t);

  // Operator 1 re-asserts the link (the documented manual fix); the FHIR server is slow to answer.
  slow = true;
  const link = api(`/blobs/${blob}/link`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ resource: `DocumentReference/${id}` }),
  });
  await new Promise((r) => setTimeout(r, 300));
  // Operator 2 withdraws the content meanwhile.
  const q = await api(`/blobs/${blob}/quarantine`, { method: 'POST' });
  t.equal(q.status, 200, 'quarantined');
  t.match(await q.json(), { blob: { state: 'quarantined' } });

  const l = await link;
  const linkAnswer = await l.text();
  slow = false;
  t.comment(`link answered ${l.status} ${linkAnswer.slice(0, 160)}`);
  t.same([l.status, outcomeCodeOf(linkAnswer)], [409, 'BLOB_CHANGED'], 'the link is refused: the blob changed meanwhile');
  const rec = (await (await api(`/blobs/${blob}`)).json()) as { blob: { state: string } };
  t.equal(rec.blob.state, 'quarantined', 'the quarantine is not undone by the link that was under way');
  const read = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=DocumentReference.content.attachment`, {
    headers: s.auth,
  });
  await read.arrayBuffer();
  t.equal(read.status, 500, 'the withdrawn content is not served');
});

t.test('a blob quarantined while a forced admin delete waits for the FHIR server is not deleted', async (t) => {
  let slow = false;
  const s = await stack(t, { admin: { enabled: true } }, (up) =>
    relay(t, up.url, (req) =>
      slow && req.method === 'GET' && /\/DocumentReference\/[^/?]+/.test(req.url ?? '')
        ? { answer: (answer, res) => setTimeout(() => passOn(answer, res), 1500) }
        : undefined,
    ),
  );
  const api = adminApi(s, await adminHeaders(s));
  const { id, blob } = await createDocument(s, {}, t);
  // The document no longer carries the content: a forced delete may go once its owner says so.
  await updateDocument(t, s, id, {
    content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('gone').toString('base64') } }],
  });

  slow = true;
  const del = api(`/blobs/${blob}?force=true`, { method: 'DELETE' });
  await new Promise((r) => setTimeout(r, 300));
  const q = await api(`/blobs/${blob}/quarantine`, { method: 'POST' });
  t.equal(q.status, 200, 'quarantined meanwhile');
  const d = await del;
  const answer = await d.text();
  slow = false;
  t.same([d.status, outcomeCodeOf(answer)], [409, 'BLOB_CHANGED'], 'the delete is refused: the blob changed meanwhile');
  const rec = await api(`/blobs/${blob}`);
  t.equal(rec.status, 200, 'the blob is still there');
  t.match(await rec.json(), { blob: { state: 'quarantined' } }, 'quarantined, as the operator left it');
});
