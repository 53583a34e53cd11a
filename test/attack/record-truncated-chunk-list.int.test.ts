// Attack 13b: the per-chunk CRCs verify each chunk served, but nothing checks that the chunks
// served are ALL of the content the FHIR server's reference (id + SHA-256) names. A metadata
// record whose size and chunk list are cut back to whole chunks (no digest forged: entries only
// removed) makes every read a complete, "verified" answer of a truncated document; a record cut
// to size 0 serves an empty 200. The record's own SHA-256 still matches the reference, and the
// SHA-256 of an empty blob is known without reading anything: that case is refused (a size-0
// record must carry the empty digest). A record cut to whole non-zero chunks is a known Low
// (docs/binary.md, "Integrity on every read": whoever can edit records can edit their digests).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { blobRefOf, createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

t.test('a record cut back to size 0 never yields a complete answer', async (t) => {
  const s = await stack(t, { defaultRule: { limits: { maxRequestBytes: 16 * 1024 * 1024 } } });
  const pdf = PDF(3 * CHUNK_BYTES + 1000);
  const ids: string[] = [];
  for (const cut of [0]) {
    const r = await upload(s, pdf, 'application/pdf');
    await r.arrayBuffer();
    t.equal(r.status, 201);
    const id = createdId(r);
    ids.push(id);
    const blob = (await blobRefOf(s, id))!.id;
    const rec = join(s.gw.blobDir, blob.slice(0, 2), blob.slice(2, 4), `${blob}.json`);
    const meta = JSON.parse(readFileSync(rec, 'utf8')) as { size: number; chunks: { size: number; crc32: string } };
    const table = Buffer.from(meta.chunks.crc32, 'base64');
    meta.size = cut * CHUNK_BYTES;
    meta.chunks.crc32 = table.subarray(0, cut * 4).toString('base64');
    writeFileSync(rec, JSON.stringify(meta));

    const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth, signal: AbortSignal.timeout(5000) });
    let body: Buffer | undefined;
    try {
      body = Buffer.from(await raw.arrayBuffer());
    } catch {
      body = undefined;
    }
    t.notOk(
      raw.status === 200 && body !== undefined && body.length < pdf.length,
      `record cut to ${cut} chunk(s): not a complete 200 of ${body?.length ?? '?'} of ${pdf.length} bytes (status ${raw.status})`,
    );
    if (cut === 0) continue; // the view of a size-0 record hangs: empty-binary-view-hangs.int.test.ts
    const view = await fetch(`${s.gw.base}/Binary/${id}`, {
      headers: { ...s.auth, accept: 'application/fhir+json' },
      signal: AbortSignal.timeout(5000),
    });
    let data: string | undefined;
    try {
      data = ((await view.json()) as { data?: string }).data;
    } catch {
      data = undefined;
    }
    t.notOk(
      view.status === 200 && data !== undefined && data.length < pdf.toString('base64').length,
      `FHIR JSON view, record cut to ${cut} chunk(s): not a complete answer with ${data?.length ?? 0} base64 chars (status ${view.status})`,
    );
  }
});
