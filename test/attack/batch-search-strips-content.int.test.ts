// (issue 13, round 6, High; fixed: nested search Bundles of a batch answer own their entries) Attack round 6 of issue 13 (relink surface). A batch's GET search entry is answered with a
// searchset Bundle as the entry's `resource`; the read direction makes that nested Bundle the owner
// of every attachment below it (inflate.ts ownsAttachments: only `{top}.entry[i].resource` owns,
// listOfResource needs depth 2). The nested Bundle has no id (Medplum; HAPI gives it a search id,
// which no resource is stored under), so the DocumentReference found is answered with its stored
// PDF neither inlined (not "written for" the Bundle) nor linked ("a resource without an id cannot be
// linked"): `{contentType, size, hash}` and nothing that names the content — with inflation ON,
// within budget. The ordinary read-modify-update of that resource (`PUT DocumentReference/id`)
// carries no link to take back: accepted, the new current version has no content, and the sweeper
// unlinks the PDF and deletes it after its class.
import t from 'tap';
import type { Test } from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { bodyOf, documentBlob, postDocument, pdfDocument, relay, sweepOptions } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';
import { bundle, BUNDLE_RULE } from './helpers.js';

/**
 * HAPI gives every searchset an id (the search's): the same batch through a shim that does so.
 * The attachment then gets a link to `Bundle/{search id}/$binary-access-read?path=Bundle.entry[0]…`,
 * a link no stored resource answers; sent back, it is "another resource's link", kept as a url.
 */
const hapiIds = (up: { url: string }, t: Test) =>
  relay(t, up.url, (req) =>
    req.method === 'POST' && /\/fhir\/?$/.test(req.url ?? '')
      ? {
          answer: (answer, res) =>
            void bodyOf(answer).then((b) => {
              const json = JSON.parse(b.toString('utf8')) as { entry?: { resource?: Record<string, unknown> }[] };
              for (const e of json.entry ?? [])
                if (e.resource?.['resourceType'] === 'Bundle') e.resource = { id: 'search-1', ...e.resource };
              const out = Buffer.from(JSON.stringify(json));
              const { 'content-length': _, 'transfer-encoding': __, ...headers } = answer.headers;
              res.writeHead(answer.statusCode ?? 502, { ...headers, 'content-length': out.length });
              res.end(out);
            }),
        }
      : undefined,
  );

for (const shape of ['Medplum (nested searchset without id)', 'HAPI (nested searchset with its search id)'])
  t.test(`${shape}: a resource found by a batch search entry, sent back: the content stays`, async (t) => {
    const s = await stack(t, { rules: [BUNDLE_RULE] }, shape.startsWith('HAPI') ? (up) => hapiIds(up, t) : undefined);
    const created = await postDocument(s, pdfDocument());
    t.equal(created.status, 201);
    const id = ((await created.json()) as { id: string }).id;
    const blob = await documentBlob(s, id);
    const path = encodeURIComponent('DocumentReference.content[0].attachment');
    const pdf = Buffer.from(
      await (await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${path}`, { headers: s.auth })).arrayBuffer(),
    );
    t.equal(pdf.length, 70_015, 'the stored PDF is served');

    // A batch of reads (what a SMART app sends to save round trips), inflation as the policy has it.
    const r = await bundle(s, s.auth, [{ request: { method: 'GET', url: `DocumentReference?_id=${id}` } }]);
    t.equal(r.status, 200);
    const answer = (await r.json()) as { entry: { resource: { entry: { resource: Record<string, any> }[] } }[] };
    const doc = answer.entry[0].resource.entry[0].resource;
    const att = doc.content[0].attachment;
    t.comment(`the batch answered: ${JSON.stringify({ ...att, data: att.data ? `${String(att.data).length} chars` : undefined })}`);
    t.ok(
      att.data !== undefined || att.url !== undefined || att._data !== undefined,
      'the answer has the content, or something that names it',
    );

    doc.description = 'edited';
    const put = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
      method: 'PUT',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(doc),
    });
    const status = put.status;
    t.comment(`update: ${status} ${(await put.text()).slice(0, 200)}`);
    const after = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${path}`, { headers: s.auth });
    const bytes = Buffer.from(await after.arrayBuffer());
    if (status === 200) {
      t.equal(after.status, 200, `an accepted update keeps the content (got ${after.status})`);
      t.ok(bytes.equals(pdf), 'the same PDF');
    } else t.equal(status, 409, 'or the update is refused');

    // The answer inlined the PDF, so the update sent it back as data: the new version has its own
    // copy, and version 1's is kept for its class (an unlinked clinical document: years), never lost.
    const current = await documentBlob(s, id);
    const opts = sweepOptions(t, s.gw.blobDir, s.up.url);
    const first = await sweep({ ...opts, now: () => midHour(25) });
    t.notOk(
      first.unlinked.some((u) => u.id === current),
      'the content the current version carries is not unlinked',
    );
    t.ok(await opts.store.head(current), 'and stays');
    const old = first.unlinked.find((u) => u.id === blob);
    if (current !== blob) t.ok(old && Date.parse(old.until) - Date.now() > 2000 * 86_400_000, "version 1's copy is kept for its class");
    t.ok(await opts.store.head(blob), 'version 1’s PDF is not deleted');
    void PDF;
  });
