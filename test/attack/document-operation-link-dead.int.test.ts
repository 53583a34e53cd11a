// Attack round 6 of issue 13 (relink surface). An operation's answer is owned "by the entries of a
// Bundle whose type is searchset, history, batch-/transaction-response, … else by its root"
// (docs/binary.md). `Composition/{id}/$document` (HAPI, IHE MHD) answers a Bundle of type
// `document` (a fresh id) whose entries are the stored resources, our blob references in them:
// the root (`Bundle/{fresh id}`) is taken as the owner, so the DocumentReference's PDF is neither
// inlined (not written for that Bundle) nor linked to anything that serves it: the link names
// `Bundle/{fresh id}/$binary-access-read?path=Bundle.entry[1]…`, which no stored resource answers.
// The client that edits the document's DocumentReference and sends it back (`PUT
// DocumentReference/id`) sends "another resource's link": kept as a plain url, the new version has
// no content and the sweeper deletes the PDF after its class.
// Fixed: content written for an entry's resource is linked through that resource (inflate.ts `claim`).
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { stack } from '../helpers/binary-stack.js';
import { documentBlob, postDocument, pdfDocument, relay, sweepOptions, sendResource } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';

t.test('a resource read from a $document answer, sent back: the content stays', async (t) => {
  let docId = '';
  // The FHIR server's $document (HAPI's shape): the Composition and what it refers to, as stored.
  const s = await stack(t, {}, (up) =>
    relay(t, up.url, (req, res) => {
      if (!/\/Composition\/c1\/\$document/.test(req.url ?? '')) return undefined;
      void fetch(`${up.url}/DocumentReference/${docId}`)
        .then((r) => r.json())
        .then((doc) => {
          const body = JSON.stringify({
            resourceType: 'Bundle',
            id: 'a9d3f0e2-doc',
            type: 'document',
            timestamp: new Date().toISOString(),
            entry: [
              { fullUrl: `${up.url}/Composition/c1`, resource: { resourceType: 'Composition', id: 'c1', status: 'final', title: 'x' } },
              { fullUrl: `${up.url}/DocumentReference/${docId}`, resource: doc },
            ],
          });
          res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
      return 'answered';
    }),
  );
  const created = await postDocument(s, pdfDocument());
  t.equal(created.status, 201);
  docId = ((await created.json()) as { id: string }).id;
  const blob = await documentBlob(s, docId);
  const path = encodeURIComponent('DocumentReference.content[0].attachment');
  const pdf = Buffer.from(
    await (await fetch(`${s.gw.base}/DocumentReference/${docId}/$binary-access-read?path=${path}`, { headers: s.auth })).arrayBuffer(),
  );
  t.equal(pdf.length, 70_015, 'the stored PDF is served');

  const r = await fetch(`${s.gw.base}/Composition/c1/$document`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  t.equal(r.status, 200);
  const answer = (await r.json()) as { entry: { resource: Record<string, any> }[] };
  const doc = answer.entry[1].resource;
  const att = doc.content[0].attachment;
  t.comment(`the document answered: ${JSON.stringify({ ...att, data: att.data ? `${String(att.data).length} chars` : undefined })}`);
  if (att.data === undefined) {
    // The link the client got, followed through the gateway.
    const url = String(att.url ?? '');
    const followed = await fetch(`${s.gw.base}${url.slice('http://gateway.test/fhir'.length)}`, { headers: s.auth });
    t.equal(followed.status, 200, `the link the answer gives serves the content (got ${followed.status} for ${url})`);
    await followed.arrayBuffer();
  }

  doc.description = 'edited';
  const put = await sendResource(s, 'PUT', `/DocumentReference/${docId}`, doc);
  const status = put.status;
  t.comment(`update: ${status} ${(await put.text()).slice(0, 300)}`);
  const after = await fetch(`${s.gw.base}/DocumentReference/${docId}/$binary-access-read?path=${path}`, { headers: s.auth });
  const bytes = Buffer.from(await after.arrayBuffer());
  if (status === 200) {
    t.equal(after.status, 200, `an accepted update keeps the content (got ${after.status})`);
    t.ok(bytes.equals(pdf), 'the same PDF');
  } else t.equal(status, 409, 'or the update is refused');

  const opts = sweepOptions(t, s.gw.blobDir, s.up.url);
  const first = await sweep({ ...opts, now: () => midHour(25) });
  t.same(first.unlinked, [], 'not unlinked: the client sent back what it was given');
  const until = first.unlinked[0]?.until;
  if (until) {
    const later = await sweep({ ...opts, now: () => midHour((Date.parse(until) - Date.now()) / 3_600_000 + 2) });
    t.comment(`after its class: deleted ${JSON.stringify(later.deleted)}`);
  }
  t.ok(await opts.store.head(blob), 'the PDF is not deleted');
});
