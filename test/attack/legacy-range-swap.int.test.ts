// FINDING (attack round 4 of issue 13, integrity, Low; fixed: every read of one get() is of the same open file / ETag): a Range read of a blob recorded without chunk digests (a record
// written by an older version) is "checked whole before it is served" — by reading the file once
// to check its SHA-256, then opening it AGAIN for the range (storage/chunks.ts verifiedRead,
// `return fetch(want.start, want.end)`), unverified. Content replaced between the two opens (a
// restore, another writer, the "object replaced by another" the checks exist for) is served as a
// complete 206 of this blob. The same holds for the S3 and Azure drivers (two GETs, the second
// not conditional on the first's ETag).
import { readdirSync, readlinkSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

/** Whether this process (the gateway runs in it) has `path` open. */
function isOpen(path: string): boolean {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

t.test('a legacy blob replaced while its Range is being checked is never served', async (t) => {
  const s = await stack(t, { defaultRule: { limits: { maxRequestBytes: 64 * 1024 * 1024 } } });
  const pdf = PDF(48 * 1024 * 1024);
  const created = await upload(s, pdf, 'application/pdf');
  await created.arrayBuffer();
  t.equal(created.status, 201);
  const id = createdId(created);
  const blob = (await blobRefOf(s, id))!.id;
  const dir = join(s.gw.blobDir, blob.slice(0, 2), blob.slice(2, 4));
  const content = join(dir, `${blob}.blob`);

  // The record as an older version wrote it: no per-chunk digests.
  const record = JSON.parse(readFileSync(join(dir, `${blob}.json`), 'utf8')) as Record<string, unknown>;
  delete record['chunks'];
  writeFileSync(join(dir, `${blob}.json`), JSON.stringify(record));

  const control = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=0-99' } });
  t.equal(control.status, 206, 'control: a Range of the legacy blob is served');
  t.ok(Buffer.from(await control.arrayBuffer()).equals(pdf.subarray(0, 100)));

  // Other content of the same size, renamed into place the moment the gateway has the file open for its check.
  const other = Buffer.alloc(pdf.length, 0x41);
  writeFileSync(join(dir, 'replacement.tmp'), other);
  const answer = fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=0-99' } });
  let swapped = false;
  for (let i = 0; i < 20_000 && !swapped; i++) {
    if (isOpen(content)) {
      renameSync(join(dir, 'replacement.tmp'), content);
      swapped = true;
    } else await new Promise((r) => setImmediate(r));
  }
  t.ok(swapped, 'the file was replaced while the gateway held it open for its check');
  const r = await answer;
  const body = Buffer.from(await r.arrayBuffer());
  t.comment(`status ${r.status}, ${body.length} bytes, first byte ${body[0]}`);
  t.notOk(r.status === 206 && body.equals(other.subarray(0, 100)), 'the replacement content is not served as this blob (a complete 206)');
});
