// Attack round 5 of issue 13 (relink surface). A Binary's content link (`_data` content-url
// extension, `{base}/Binary/{id}`) names no version and carries nothing that identifies the
// content (Binary has no size/hash; the attachment relink checks those). A history entry of an
// older version is answered with that same link (docs/binary.md: links name the current
// version). Reverting a Binary to an earlier version — read it from `_history/1` with links, PUT
// it back — is accepted (200) and the new version silently gets the CURRENT version's content,
// not the one the client read. The content it meant to restore stays unlinked and is deleted
// after its class. A relink must name the content it stands for (a digest in the link or the
// extension) and refuse when the current version has other content there.
import t from 'tap';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

t.test('a Binary reverted from its history with links gets the content it was read with, or is refused', async (t) => {
  const s = await stack(t);
  const a = PDF(70_000);
  const b = PDF(71_000);
  const up = await upload(s, a, 'application/pdf');
  await up.arrayBuffer();
  const id = createdId(up);
  const blobA = (await blobRefOf(s, id))!.id;
  const second = await upload(s, b, 'application/pdf', {}, 'PUT', `/Binary/${id}`);
  t.equal(second.status, 200);
  await second.arrayBuffer();

  // Version 1 as the client reads it (content linked, not inlined), sent back to revert.
  // (A Binary's history answer links its content: Binary has no url, the link sits in `_data`.)
  const history = await fetch(`${s.gw.base}/Binary/${id}/_history?_inflate=false`, {
    headers: { ...s.auth, accept: 'application/fhir+json' },
  });
  const entries = ((await history.json()) as { entry: { resource: Record<string, any> }[] }).entry;
  const old = entries.find((e) => e.resource.meta?.versionId === '1')!.resource;
  t.comment(`version 1 as read: ${JSON.stringify(old).slice(0, 400)}`);
  t.notOk(old.data, 'linked, not inlined');
  delete old.meta;
  const put = await fetch(`${s.gw.base}/Binary/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(old),
  });
  const status = put.status;
  await put.arrayBuffer();
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  const now = Buffer.from(await raw.arrayBuffer());
  t.comment(`revert: ${status}; current content ${now.length} bytes (version 1 had ${a.length}, version 2 ${b.length})`);
  if (status === 200) {
    t.ok(now.equals(a), 'the reverted Binary serves version 1’s content');
    t.equal((await blobRefOf(s, id))?.id, blobA, 'and refers to version 1’s blob');
  } else t.equal(status, 409, 'or the revert is refused: the link names other content now');
});
