// Streaming extraction of one attachment's inline data from a resource of any size.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { parseAttachmentPath } from '../../src/fhir/attachment-path.js';
import { readAttachment } from '../../src/rewrite/attachment-reader.js';

function dir(t: Test): string {
  const d = mkdtempSync(join(tmpdir(), 'fbg-extract-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
const pieces = (s: string, n: number) =>
  Readable.from(Array.from({ length: Math.ceil(s.length / n) }, (_, i) => Buffer.from(s.slice(i * n, (i + 1) * n))));

t.test('the attachment a path names: its members kept, its data spooled, everything else passed by', async (t) => {
  const d = dir(t);
  const a = randomBytes(30_000);
  const b = randomBytes(20_000);
  const doc = JSON.stringify({
    text: { div: 'x'.repeat(50_000) },
    content: [
      { attachment: { data: a.toString('base64'), contentType: 'application/pdf' } },
      {
        format: { code: 'f' },
        attachment: { title: 'second', data: b.toString('base64'), contentType: 'image/png', _data: { extension: [] } },
      },
    ],
    meta: { versionId: '3', lastUpdated: '2020-01-01T00:00:00Z' },
    id: 'd1',
    resourceType: 'DocumentReference',
  });
  for (const size of [1, 7, 1000, 1 << 16]) {
    const x = await readAttachment(
      pieces(doc, size),
      parseAttachmentPath('DocumentReference.content[1].attachment', 'DocumentReference'),
      d,
    );
    t.same(
      x.resource,
      { meta: { versionId: '3', lastUpdated: '2020-01-01T00:00:00Z' }, id: 'd1', resourceType: 'DocumentReference' },
      `${size}: identity members`,
    );
    t.same(
      x.attachment,
      { title: 'second', contentType: 'image/png', _data: { extension: [] } },
      `${size}: attachment members without data`,
    );
    t.equal(x.spool?.size, b.length);
    t.ok(readFileSync(x.spool!.file).equals(b), `${size}: the second attachment's bytes`);
    rmSync(x.spool!.file);
  }
  const first = await readAttachment(
    pieces(doc, 4096),
    parseAttachmentPath('DocumentReference.content.attachment', 'DocumentReference'),
    d,
  );
  t.ok(readFileSync(first.spool!.file).equals(a), 'no index: the first');
  rmSync(first.spool!.file);
  const none = await readAttachment(
    pieces(doc, 4096),
    parseAttachmentPath('DocumentReference.content[4].attachment', 'DocumentReference'),
    d,
  );
  t.equal(none.attachment, undefined, 'nothing at that path');
  t.equal(none.spool, undefined);
  t.same(readdirSync(d), [], 'no spool left behind');
});

t.test('Binary.data: the resource is its own attachment; arrays of attachments (Patient.photo)', async (t) => {
  const d = dir(t);
  const c = randomBytes(5000);
  const bin = await readAttachment(
    pieces(
      JSON.stringify({
        resourceType: 'Binary',
        id: 'b',
        contentType: 'application/pdf',
        securityContext: { reference: 'Patient/1' },
        data: c.toString('base64'),
      }),
      333,
    ),
    'binary',
    d,
  );
  t.same(bin.resource, { resourceType: 'Binary', id: 'b', contentType: 'application/pdf', securityContext: { reference: 'Patient/1' } });
  t.ok(readFileSync(bin.spool!.file).equals(c));
  const photo = await readAttachment(
    pieces(
      JSON.stringify({
        resourceType: 'Patient',
        photo: [
          { contentType: 'image/png', data: 'AAAA' },
          { contentType: 'image/jpeg', data: c.toString('base64') },
        ],
      }),
      100,
    ),
    parseAttachmentPath('Patient.photo[1]', 'Patient'),
    d,
  );
  t.equal(photo.attachment?.contentType, 'image/jpeg');
  t.ok(readFileSync(photo.spool!.file).equals(c));
});

t.test('malformed input: refused, nothing left behind', async (t) => {
  const d = dir(t);
  const steps = parseAttachmentPath('Media.content', 'Media');
  await t.rejects(readAttachment(pieces('{"resourceType":"Media","content":{"data":"AAAA', 3), steps, d), 'truncated');
  await t.rejects(readAttachment(pieces('{"resourceType":"Media","content":{"data":"AA*A"}}', 3), steps, d), {
    message: /not valid base64/,
  });
  t.same(readdirSync(d), []);
});
