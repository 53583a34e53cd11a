// FINDING (attack round 5, integrity; a member of legacy-range-swap's class the fix missed): a
// Range of a blob recorded without chunk digests is checked whole, then read again for the range
// (storage/chunks.ts verifiedRead). Round 4 made the filesystem driver's second read refuse a file
// other than the one checked — but only for plain files (`twice` / `identity` in
// filesystem.ts get()). A SEALED blob (filesystem.encryption) takes the other branch: openSealed
// opens the path afresh for each read, with no identity check. Another sealed blob of the same
// size renamed into place between the two reads (a restore, another writer — the "object replaced
// by another" the checks exist for) opens with its own header and data key, authenticates, and is
// served as a complete 206 of this Binary: another patient's bytes.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync, renameSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

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

t.test('a sealed legacy blob replaced while its Range is being checked is never served', async (t) => {
  const env = `FBG_TEST_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[env] = randomBytes(32).toString('base64');
  t.teardown(() => delete process.env[env]);
  const s = await stack(t, {
    defaultRule: { limits: { maxRequestBytes: 64 * 1024 * 1024 } },
    storage: { filesystem: { encryption: { activeKey: 'k1', keys: [{ id: 'k1', env }] } } },
  });
  const size = 48 * 1024 * 1024;
  const a = PDF(size);
  const b = PDF(size);
  const ids: string[] = [];
  const blobs: string[] = [];
  for (const body of [a, b]) {
    const r = await upload(s, body, 'application/pdf');
    await r.arrayBuffer();
    t.equal(r.status, 201);
    ids.push(createdId(r));
    blobs.push((await blobRefOf(s, ids.at(-1)!))!.id);
  }
  const dirOf = (id: string) => join(s.gw.blobDir, id.slice(0, 2), id.slice(2, 4));
  const content = join(dirOf(blobs[0]), `${blobs[0]}.blob`);
  // Binary A's record as an older version wrote it: no per-chunk digests.
  const recPath = join(dirOf(blobs[0]), `${blobs[0]}.json`);
  const record = JSON.parse(readFileSync(recPath, 'utf8')) as Record<string, unknown>;
  t.ok(record['chunks'], 'written with chunk digests');
  delete record['chunks'];
  writeFileSync(recPath, JSON.stringify(record));

  const control = await fetch(`${s.gw.base}/Binary/${ids[0]}`, { headers: { ...s.auth, range: 'bytes=0-99' } });
  t.equal(control.status, 206, 'control: a Range of the sealed legacy blob is served');
  t.ok(Buffer.from(await control.arrayBuffer()).equals(a.subarray(0, 100)));

  // Binary B's sealed file (same plaintext size, so the same sealed length), ready to be renamed into A's place.
  const replacement = join(dirOf(blobs[0]), 'replacement.tmp');
  copyFileSync(join(dirOf(blobs[1]), `${blobs[1]}.blob`), replacement);
  const answer = fetch(`${s.gw.base}/Binary/${ids[0]}`, { headers: { ...s.auth, range: 'bytes=0-99' } });
  let swapped = false;
  for (let i = 0; i < 20_000 && !swapped; i++) {
    if (isOpen(content)) {
      // Past the header read: the whole-content check is streaming the file.
      await new Promise((r) => setTimeout(r, 20));
      renameSync(replacement, content);
      swapped = true;
    } else await new Promise((r) => setImmediate(r));
  }
  t.ok(swapped, 'the file was replaced while the gateway was checking it');
  const r = await answer;
  const body = Buffer.from(await r.arrayBuffer().catch(() => new ArrayBuffer(0)));
  t.comment(`status ${r.status}, ${body.length} bytes; B's first bytes: ${body.equals(b.subarray(0, 100))}`);
  t.notOk(r.status === 206 && body.equals(b.subarray(0, 100)), "Binary B's content is not served as a complete 206 of Binary A");
});
