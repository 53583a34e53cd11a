// An upload's download name in a blob record: names any script allows are stored where a gateway
// from before such names passes over them (a rollback loses the name, never the blob).
import t from 'tap';
import { newInfo, parseMeta, serializeMeta } from '../../src/storage/meta.js';

const ID = '0123456789abcdef0123456789abcdef';
const digest = { size: 3, sha256: 'a'.repeat(64), sha1: 'b'.repeat(40) };
const record = (filename: string) =>
  serializeMeta(newInfo(ID, digest, { contentType: 'application/pdf', upload: { by: 'alice', for: 'Patient/1', filename } }));

/** The upload check a gateway applied before names in any script (its `filename` rule). */
const legacyAccepts = (text: string): boolean => {
  const upload = (JSON.parse(text) as { upload?: { filename?: string } }).upload;
  return upload?.filename === undefined || /^[\w .-]{1,128}$/.test(upload.filename);
};

t.test('a name the older rule allows is stored as filename, as before', async (t) => {
  const text = record('scan 2.pdf');
  t.match(JSON.parse(text), { upload: { filename: 'scan 2.pdf' } });
  t.notOk('name' in (JSON.parse(text) as { upload: object }).upload);
  t.ok(legacyAccepts(text));
  t.equal(parseMeta(text, ID).info.upload?.filename, 'scan 2.pdf');
});

t.test('a name in another script is stored as name: read back here, passed over by an older gateway', async (t) => {
  for (const name of ['Befund Müller.pdf', 'report (1).pdf', '検査.pdf']) {
    const text = record(name);
    const upload = (JSON.parse(text) as { upload: Record<string, unknown> }).upload;
    t.equal(upload['name'], name);
    t.notOk('filename' in upload, name);
    t.ok(legacyAccepts(text), `${name}: an older gateway still reads the record`);
    t.equal(parseMeta(text, ID).info.upload?.filename, name);
  }
});

t.test('records written before keep parsing; a bad name in either field is refused', async (t) => {
  const base = JSON.parse(record('a.pdf')) as { upload: Record<string, unknown> };
  const withUpload = (upload: Record<string, unknown>) => JSON.stringify({ ...base, upload: { by: 'alice', for: 'Patient/1', ...upload } });
  // The older rule allowed a leading space; such a record is still read.
  t.equal(parseMeta(withUpload({ filename: ' old.pdf' }), ID).info.upload?.filename, ' old.pdf');
  t.throws(() => parseMeta(withUpload({ name: 'a"b.pdf' }), ID), { code: 'BLOB_UNREADABLE' });
  t.throws(() => parseMeta(withUpload({ name: 7 }), ID), { code: 'BLOB_UNREADABLE' });
  t.throws(() => parseMeta(withUpload({ filename: 'a/b.pdf' }), ID), { code: 'BLOB_UNREADABLE' });
});
