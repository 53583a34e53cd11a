// Attack round 4 of issue 13 (sweeper surface), High; fixed: an update's own content links are
// turned back into the reference to the content its current version has there. A client that reads a resource and sends it back — the ordinary
// FHIR read-modify-update — loses the content when the read answered with a link instead of data
// (`_inflate=false`, a rule with inflation off, or an attachment past `inflate.maxBytesPerResponse`).
// The link is the gateway's own `…/$binary-access-read?path=…` URL; the write direction passes it
// through as a plain `url`, the new current version no longer carries the blob reference, and the
// sweeper unlinks the blob and deletes it after its class (7 days for a Media). The current
// version's link then names no content at all.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { blobRefOf, code, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { createDocument, documentBlob } from '../helpers/lifecycle.js';
import { bundle, BUNDLE_RULE, outcome } from './helpers.js';
import { WAV } from '../helpers/content.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

t.test('read with links, update one field, send it back: the content stays the resource’s', async (t) => {
  const s = await stack(t);
  const png = WAV(70_000);
  const created = await fetch(`${s.gw.base}/Media`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Media',
      status: 'preparation',
      content: { contentType: 'audio/wav', data: png.toString('base64') },
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/Media/${id}`)).json()) as { content: { _data: { extension: unknown } } };
  const blob = findBlobRef(held.content._data.extension)!.id;

  // The client reads it (links, not bytes), sets status, and updates: plain FHIR.
  const read = await fetch(`${s.gw.base}/Media/${id}?_inflate=false`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  const media = (await read.json()) as Record<string, any>;
  t.type(media.content.url, 'string', 'the read answered a link');
  media.status = 'completed';
  const put = await fetch(`${s.gw.base}/Media/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(media),
  });
  t.equal(put.status, 200, 'update accepted');
  await put.arrayBuffer();

  // What the client now reads as its Media's content.
  const now = await fetch(`${s.gw.base}/Media/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  const after = (await now.json()) as Record<string, any>;
  t.comment(`current version's attachment: ${JSON.stringify({ ...after.content, data: after.content.data ? '…' : undefined })}`);
  // The link the client holds, followed through the gateway (the test's public base is not routable).
  const followed = after.content.data
    ? undefined
    : await fetch(`${s.gw.base}/Media/${id}/${String(after.content.url).split(`/Media/${id}/`)[1]}`, { headers: s.auth });
  const content = followed ? Buffer.from(await followed.arrayBuffer()) : Buffer.from(after.content.data, 'base64');
  t.equal(followed?.status ?? 200, 200, 'the link of the current version answers');
  t.ok(content.equals(png), `the current version still reads the recording (got ${content.length} bytes)`);

  // The sweeper, a day on and then nine days on.
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a14-rt-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const run = (hours: number) =>
    sweep({
      store,
      upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
      spoolDir: spool,
      retention: defaultRetention(),
      dryRun: false,
      holder: 'attack-14',
      now: () => midHour(hours),
    });
  const first = await run(25);
  t.same(first.unlinked, [], `not unlinked: the current version shows the same recording (${JSON.stringify(first.unlinked)})`);
  const later = await run(9 * 24);
  t.notOk(later.deleted.includes(blob), 'never deleted while the current Media shows it');
  t.ok(await store.head(blob), 'the recording is still in the store');
});

t.test(
  'the class: own links of a Binary and of an attachment come back; stale, foreign and bundled links do not pass as content',
  async (t) => {
    const s = await stack(t, { rules: [BUNDLE_RULE] });
    const json = { ...s.auth, 'content-type': 'application/fhir+json' };
    const put = (path: string, body: unknown) =>
      fetch(`${s.gw.base}/${path}`, { method: 'PUT', headers: json, body: JSON.stringify(body) });

    // A Binary read as FHIR JSON with its content linked (a `_data` extension), sent back.
    const pdf = PDF(70_000);
    const up = await upload(s, pdf, 'application/pdf');
    await up.arrayBuffer();
    const bin = createdId(up);
    const before = (await blobRefOf(s, bin))!.id;
    // A Binary in a history answer, its content linked (a `_data` extension: Binary has no url).
    const found = (await (await fetch(`${s.gw.base}/Binary/${bin}/_history?_inflate=false`, { headers: s.auth })).json()) as Record<
      string,
      any
    >;
    const asRead = found.entry[0].resource as Record<string, any>;
    t.match(asRead._data, { extension: [{ valueUrl: /\/Binary\// }] }, 'the read linked the content');
    const back = await put(`Binary/${bin}`, asRead);
    t.equal(back.status, 200);
    await back.arrayBuffer();
    t.equal((await blobRefOf(s, bin))?.id, before, 'the new version refers to the same stored content');
    const raw = await fetch(`${s.gw.base}/Binary/${bin}`, { headers: { ...s.auth, accept: 'application/pdf' } });
    t.ok(Buffer.from(await raw.arrayBuffer()).equals(pdf), 'and serves it');

    const doc = await createDocument(s, {}, t);
    const other = await createDocument(s, {}, t);
    const link = (id: string, path: string) =>
      `${s.gw.publicBaseUrl}/DocumentReference/${id}/$binary-access-read?path=${encodeURIComponent(path)}`;
    const linked = (id: string, path: string, extra: Record<string, unknown> = {}) => ({
      resourceType: 'DocumentReference',
      id,
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', url: link(id, path), ...extra } }],
    });
    // A link to a path the current version has no content at, or with a size that contradicts it.
    t.equal(
      await code(await put(`DocumentReference/${doc.id}`, linked(doc.id, 'DocumentReference.content[3].attachment'))),
      'CONTENT_LINK_UNRESOLVED',
    );
    t.equal(
      await code(await put(`DocumentReference/${doc.id}`, linked(doc.id, 'DocumentReference.content[0].attachment', { size: 5 }))),
      'CONTENT_LINK_UNRESOLVED',
      'a size that contradicts the linked content (and no hash to say which content it was)',
    );
    // Another resource's link in an update: not this resource's content, never stored as a URL to it (round 6).
    const foreign = await put(`DocumentReference/${doc.id}`, {
      ...linked(doc.id, 'x'),
      content: [{ attachment: { contentType: 'application/pdf', url: link(other.id, 'DocumentReference.content[0].attachment') } }],
    });
    t.equal(await code(foreign), 'CONTENT_LINK_UNRESOLVED');
    t.equal(foreign.status, 409);
    const held = (await (await fetch(`${s.up.url}/DocumentReference/${doc.id}`)).json()) as Record<string, any>;
    t.notOk(JSON.stringify(held).includes(other.blob), "the other document's blob is not referred to");
    t.equal(await documentBlob(s, doc.id), doc.blob, 'the document keeps its own content');
    // In a Bundle the entry's target is not known while it streams by: refused, never stored as a bare link.
    const [status, c] = await outcome(
      bundle(
        s,
        s.auth,
        [
          {
            request: { method: 'PUT', url: `DocumentReference/${other.id}` },
            resource: linked(other.id, 'DocumentReference.content[0].attachment'),
          },
        ],
        'transaction',
      ),
    );
    t.same([status, c], [400, 'BAD_REQUEST']);
    t.equal(await documentBlob(s, other.id), other.blob, 'the other document still refers to its content');
  },
);
