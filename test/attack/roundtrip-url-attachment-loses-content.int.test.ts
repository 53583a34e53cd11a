// Attack round 5 of issue 13 (relink surface), a new member of roundtrip-link-loses-content.
// FHIR lets an Attachment carry `url` and `data` together (the url "SHALL point to the same
// content"). The gateway stores the data and keeps the url. A read that does not inline it
// (`_inflate=false`, a rule with inflation off, past the budget) gives no link for it
// (inflate-attachment.ts: a link only `if (!a.hasUrl)`) and strips our reference from `_data`:
// the answer is `{contentType, url, size, hash}`, nothing that names the stored content. Sent
// back unchanged in the ordinary read-modify-update (`PUT Type/id`), there is no own link to
// relink: the new current version has no content in the gateway, `$binary-access-read` answers
// 404, and the sweeper unlinks the PDF and deletes it after its class.
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { documentBlob, postDocument, sweepOptions } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';

t.test('an attachment with url and data, read with links and sent back: the content stays', async (t) => {
  const s = await stack(t);
  const pdf = PDF(70_000);
  const created = await postDocument(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', url: 'https://records.example.org/docs/123.pdf', data: pdf.toString('base64') } },
    ],
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const blob = await documentBlob(s, id);
  const path = encodeURIComponent('DocumentReference.content[0].attachment');
  const before = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${path}`, { headers: s.auth });
  t.ok(Buffer.from(await before.arrayBuffer()).equals(pdf), 'the stored PDF is served');

  const read = await fetch(`${s.gw.base}/DocumentReference/${id}?_inflate=false`, {
    headers: { ...s.auth, accept: 'application/fhir+json' },
  });
  const body = (await read.json()) as Record<string, any>;
  t.comment(`read with links: ${JSON.stringify(body.content)}`);
  body.description = 'edited';
  const put = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(body),
  });
  t.equal(put.status, 200, 'the update is accepted');
  await put.arrayBuffer();

  const after = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${path}`, { headers: s.auth });
  const bytes = Buffer.from(await after.arrayBuffer());
  t.equal(after.status, 200, `the current version still has its content (got ${after.status})`);
  t.ok(bytes.equals(pdf), 'the same PDF');

  const opts = sweepOptions(t, s.gw.blobDir, s.up.url);
  const first = await sweep({ ...opts, now: () => midHour(25) });
  t.same(first.unlinked, [], 'not unlinked: the current version was sent back with it');
  const until = first.unlinked[0]?.until;
  if (until) {
    const later = await sweep({ ...opts, now: () => midHour((Date.parse(until) - Date.now()) / 3_600_000 + 2) });
    t.comment(`after its class: deleted ${JSON.stringify(later.deleted)}`);
  }
  t.ok(await opts.store.head(blob), 'the PDF is never deleted while the current version was sent back with it');
});
