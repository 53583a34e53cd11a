// Attack round 5 of issue 13 (relink surface), a new member of roundtrip-link-loses-content.
// Own links are turned back into the content's reference only in `PUT Type/id`
// (resource-writes.ts: `own` needs `i.id`). The same read-modify-update sent as a conditional
// update (`PUT DocumentReference?identifier=…`, which the upstream resolves to the very resource
// the links name) passes the link through as a plain `url`: the upstream accepts it (200), the new
// current version carries no blob reference, `$binary-access-read` of the current version finds
// no content, and the sweeper unlinks the PDF and deletes it after its class. A Bundle refuses such
// links since its targets are unknown; a conditional update's target is just as unknown.
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, sweepOptions } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';

t.test('read with links, send it back as a conditional update: the content stays', async (t) => {
  const s = await stack(t);
  const system = 'urn:attack5';
  const value = `doc-${Date.now()}`;
  const doc = await createDocument(s, { identifier: [{ system, value }] }, t);

  const read = await fetch(`${s.gw.base}/DocumentReference/${doc.id}?_inflate=false`, {
    headers: { ...s.auth, accept: 'application/fhir+json' },
  });
  const body = (await read.json()) as Record<string, any>;
  t.type(body.content[0].attachment.url, 'string', 'the read answered a link');
  body.description = 'edited';

  const put = await fetch(`${s.gw.base}/DocumentReference?identifier=${encodeURIComponent(`${system}|${value}`)}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(body),
  });
  const status = put.status;
  t.comment(`conditional update: ${status} ${(await put.text()).slice(0, 300)}`);

  const held = (await (await fetch(`${s.up.url}/DocumentReference/${doc.id}`)).json()) as Record<string, any>;
  t.comment(`upstream holds: ${JSON.stringify(held.content)} (description ${String(held.description)})`);
  const accepted = status === 200 || status === 201;
  const path = encodeURIComponent('DocumentReference.content[0].attachment');
  const content = await fetch(`${s.gw.base}/DocumentReference/${doc.id}/$binary-access-read?path=${path}`, { headers: s.auth });
  const bytes = Buffer.from(await content.arrayBuffer());
  t.comment(`current content: ${content.status}, ${bytes.length} bytes`);
  if (accepted) {
    t.equal(content.status, 200, 'the current version still has its content');
    t.equal(bytes.length, 70_015, 'the PDF');
    t.ok(JSON.stringify(held).includes(doc.blob), 'an accepted update refers to the stored PDF');
  } else t.equal(status, 409, 'or the conditional update with an own link is refused, like an unresolvable one');

  // The sweeper, a day on (recheck) and nine days on (past the document's class).
  const opts = sweepOptions(t, new FilesystemBlobStore({ directory: s.gw.blobDir }), s.up.url);
  const first = await sweep({ ...opts, now: () => midHour(25) });
  t.comment(`after a day: unlinked ${JSON.stringify(first.unlinked)}`);
  t.same(first.unlinked, [], 'not unlinked: the current version was sent back with it');
  const until = first.unlinked[0]?.until;
  if (until) {
    const hours = (Date.parse(until) - Date.now()) / 3_600_000 + 2;
    const later = await sweep({ ...opts, now: () => midHour(hours) });
    t.comment(`after its class (${until}): deleted ${JSON.stringify(later.deleted)}`);
  }
  t.ok(await opts.store.head(doc.blob), 'the PDF the current version was sent back with is never deleted');
});
