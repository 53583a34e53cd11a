// Attack 13c: a Bundle whose answer was lost learns, per blob, what its entry was written for
// (docs/operations.md: "A blob written inside a Bundle whose answer was lost ... learns its entry's
// request as its intent"), but only when the connection fails before the answer's head. When the
// upstream answers 200 and the body is cut midway, spoolBundleResponse throws past settle() and
// intend(): the blobs stay `pending` with no intent, and every sweep "keeps" them forever ("no
// record of what it was written for") — though the upstream holds the resource that refers to them.
import t from 'tap';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { stack } from '../helpers/binary-stack.js';
import { bodyOf, pdfDocument, relay, sweepAt, sweepOptions } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';
import { bundle } from './helpers.js';

for (const type of ['transaction', 'batch'] as const) {
  t.test(`${type} answered 200 and cut midway: its blob learns its intent and is reconciled, not kept forever`, async (t) => {
    let direct = '';
    const s = await stack(t, {}, async (up) => {
      direct = up.url;
      // Relays everything; a Bundle POST to the base gets the upstream's head and half its body, then the connection is cut.
      return relay(t, up.url, (req) =>
        req.method === 'POST' && /^\/fhir\/?(\?.*)?$/.test(req.url ?? '')
          ? {
              answer: (answer, res) =>
                void bodyOf(answer).then((body) => {
                  const headers = { ...answer.headers, 'content-length': String(body.length) };
                  delete headers['transfer-encoding'];
                  res.writeHead(answer.statusCode ?? 502, headers);
                  res.write(body.subarray(0, Math.floor(body.length / 2)));
                  setTimeout(() => res.socket?.destroy(), 50);
                }),
            }
          : undefined,
      );
    });
    const r = await bundle(
      s,
      s.auth,
      [
        {
          resource: pdfDocument({ identifier: [{ system: 'urn:a13c', value: `cut-${type}` }] }),
          request: { method: 'POST', url: 'DocumentReference' },
        },
      ],
      type,
    );
    const answer = await r.text().catch(() => '');
    t.comment(`client got ${r.status} ${answer.slice(0, 300)}`);
    t.equal(r.status, 502, "an answer lost on the way is the upstream's failure (502), not an internal error");
    const found = (await (await fetch(`${direct}/DocumentReference?identifier=urn:a13c|cut-${type}`)).json()) as {
      entry?: { resource: { id: string } }[];
    };
    t.equal(found.entry?.length, 1, 'the upstream holds the DocumentReference');
    const docId = found.entry![0].resource.id;

    const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
    const items = (await store.list()).items;
    t.equal(items.length, 1, 'one blob stored');
    const blob = items[0];
    t.comment(JSON.stringify({ state: blob.state, intent: blob.intent, owner: blob.owner }));
    t.ok(blob.state === 'linked' || blob.intent === 'DocumentReference', 'linked, or pending with its entry’s intent');

    const report = await sweepAt(sweepOptions(t, store, direct), midHour(2));
    t.same(report.kept, [], `nothing kept for want of an intent (report: ${JSON.stringify(report)})`);
    t.match(
      await store.head(blob.id),
      { state: 'linked', owner: `DocumentReference/${docId}` },
      'linked to the resource that refers to it',
    );
    const read = await fetch(`${s.gw.base}/DocumentReference/${docId}`, { headers: s.auth });
    t.ok((await read.text()).includes('"data":"JVBER'), 'the document the upstream holds reads its content');
  });
}
