// Attack 13b: blobs sealed at rest (filesystem.encryption) are authenticated chunk by chunk by
// AES-GCM, but the associated data binds each chunk to its own file's header, not to the blob
// it is recorded as: two sealed files of the same size swapped behind the gateway's back both
// open, both authenticate, and each Binary serves the other's content in a complete 200.
// The record's SHA-256 (checked against the FHIR server's reference) is never compared with the
// bytes on a read, and no chunk CRC is checked for sealed blobs.
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

t.test("two sealed blobs of one size, their files swapped: neither Binary serves the other one's content", async (t) => {
  const env = `FBG_TEST_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[env] = randomBytes(32).toString('base64');
  t.teardown(() => delete process.env[env]);
  const s = await stack(t, { storage: { filesystem: { encryption: { activeKey: 'k1', keys: [{ id: 'k1', env }] } } } });
  const a = PDF(200_000);
  const b = PDF(200_000);
  t.notOk(a.equals(b), 'two different documents');
  const ids: string[] = [];
  const blobs: string[] = [];
  for (const body of [a, b]) {
    const r = await upload(s, body, 'application/pdf');
    await r.arrayBuffer();
    t.equal(r.status, 201);
    ids.push(createdId(r));
    blobs.push((await blobRefOf(s, ids.at(-1)!))!.id);
  }
  const path = (id: string) => join(s.gw.blobDir, id.slice(0, 2), id.slice(2, 4), `${id}.blob`);
  t.equal(readFileSync(path(blobs[0])).length, readFileSync(path(blobs[1])).length, 'sealed files of the same length');
  renameSync(path(blobs[0]), `${path(blobs[0])}.x`);
  renameSync(path(blobs[1]), path(blobs[0]));
  renameSync(`${path(blobs[0])}.x`, path(blobs[1]));

  for (const [view, headers] of [
    ['raw', {}],
    ['range', { range: 'bytes=0-99' }],
    ['FHIR JSON', { accept: 'application/fhir+json' }],
  ] as const) {
    const r = await fetch(`${s.gw.base}/Binary/${ids[0]}`, { headers: { ...s.auth, ...headers } });
    let body: Buffer | undefined;
    try {
      body = Buffer.from(await r.arrayBuffer());
    } catch {
      body = undefined; // cut: fine
    }
    const served =
      body === undefined
        ? undefined
        : view === 'FHIR JSON'
          ? Buffer.from(String((JSON.parse(body.toString()) as { data?: string }).data ?? ''), 'base64')
          : body;
    const other = view === 'range' ? b.subarray(0, 100) : b;
    t.notOk(served?.equals(other), `${view}: Binary A's answer (status ${r.status}) is not Binary B's content`);
    if (r.status < 300) t.ok(body === undefined, `${view}: a success answer is cut, never complete`);
    else t.equal(r.status, 500, `${view}: refused as BLOB_UNREADABLE`);
  }
});
