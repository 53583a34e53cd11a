// Attack 13c: "refers to" (fhir/blob-reference.ts refersTo) stops looking 64 levels down, but the
// rewrite engine externalizes (and inflates) attachment data up to 128 levels down. An attachment
// in a deeply nested extension (valid FHIR: Extension.extension, 32+ levels) is stored, served
// and inflated, yet the sweeper believes the resource's CURRENT version no longer refers to it:
// it is unlinked, then deleted after its class; a pending one of the same shape is deleted at once.
import t, { type Test } from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { editRecord, hoursAgo, postDocument, sweepAt, sweepOptions } from '../helpers/lifecycle.js';
import { midHour } from '../helpers/retention.js';

const LEVELS = 36;

function nested(data: string): Record<string, unknown> {
  let ext: Record<string, unknown> = { url: 'http://example.org/leaf', valueAttachment: { contentType: 'application/pdf', data } };
  for (let i = 0; i < LEVELS; i++) ext = { url: `http://example.org/level-${i}`, extension: [ext] };
  return {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'text/plain', url: 'urn:x' } }],
    extension: [ext],
  };
}

/** The blob ids of the write, from its audit record. */
function blobsWritten(s: Stack, reqId: string): string[] {
  const rec = s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as
    { what: { blobs: { action: string; blob: string }[] } } | undefined;
  return (rec?.what.blobs ?? []).filter((b) => b.action === 'write').map((b) => b.blob);
}

async function create(t: Test, s: Stack): Promise<{ id: string; blob: string }> {
  const r = await postDocument(s, nested(PDF(70_000).toString('base64')));
  t.equal(r.status, 201, 'created');
  const id = ((await r.json()) as { id: string }).id;
  const reqId = r.headers.get('x-request-id')!;
  for (let i = 0; i < 50 && blobsWritten(s, reqId).length === 0; i++) await new Promise((res) => setTimeout(res, 20));
  const blobs = blobsWritten(s, reqId);
  t.equal(blobs.length, 1, 'the nested attachment was externalized into one blob');
  return { id, blob: blobs[0] };
}

async function readsContent(s: Stack, id: string): Promise<boolean> {
  const r = await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: s.auth });
  const text = await r.text();
  return r.status === 200 && text.includes('"data":"JVBER');
}

t.test('a linked blob deep in the current version is neither unlinked nor deleted by the sweeper', async (t) => {
  const s = await stack(t);
  const opts = sweepOptions(t, s.gw.blobDir, s.up.url);
  const { id, blob } = await create(t, s);
  t.ok(await readsContent(s, id), 'the current version reads its content (inflated)');
  const { store } = opts;
  t.match(await store.head(blob), { state: 'linked', owner: `DocumentReference/${id}` });

  const check = await sweepAt(opts, midHour(25));
  t.same(check.unlinked, [], 'not unlinked: the current version refers to it');
  // Past any class (clinical-documents: 2557 days).
  await sweepAt(opts, midHour(3000 * 24));
  t.ok(await store.head(blob), 'still in the store');
  t.ok(await readsContent(s, id), 'the current version still reads its content');
});

t.test('a pending blob deep in a resource the upstream holds is linked, not deleted', async (t) => {
  const s = await stack(t);
  const { id, blob } = await create(t, s);
  // As a lost answer leaves it: pending, intent the type, two hours old.
  editRecord(s.gw.blobDir, blob, { state: 'pending', owner: null, intent: 'DocumentReference', createdAt: hoursAgo(2) });
  const report = await sweep(sweepOptions(t, s.gw.blobDir, s.up.url));
  t.notOk(report.deleted.includes(blob), `not deleted (report: ${JSON.stringify({ deleted: report.deleted, linked: report.linked })})`);
  t.same(report.linked, [{ id: blob, owner: `DocumentReference/${id}` }], 'linked to the resource that refers to it');
  t.ok(await readsContent(s, id), 'the resource still reads its content');
});
