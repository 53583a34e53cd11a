import t from 'tap';
import { uploadPurpose } from '../../src/binary/file-metadata.js';
import { categoriesOf } from '../../src/binary/pending-lookup.js';
import { summary } from '../../src/binary/sweep-schedule.js';
import { retentionClass } from '../../src/binary/sweeper.js';
import { defaultRetention } from '../helpers/retention.js';

t.test('a retention class matches by every list it has; the longest match wins; else unlinked', async (t) => {
  const r = defaultRetention({
    classes: [
      { name: 'consents', keepDays: 10, purposes: ['patient_consent'] },
      { name: 'summaries', keepDays: 20, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9', '11506-3'] },
      { name: 'media', keepDays: 30, resourceTypes: ['Media'] },
    ],
  });
  t.same(retentionClass(r, { purpose: 'patient_consent' }, 'Binary', []), { name: 'consents', keepDays: 10 });
  t.same(retentionClass(r, {}, 'DocumentReference', ['34133-9', 'http://loinc.org|34133-9']), { name: 'summaries', keepDays: 20 });
  t.same(retentionClass(r, {}, 'DocumentReference', ['11506-3']), { name: 'summaries', keepDays: 20 }, 'a bare code');
  t.same(
    retentionClass(r, {}, 'DocumentReference', ['http://other|34133-9', '34133-9']),
    { name: 'unlinked', keepDays: 0 },
    'another system',
  );
  t.same(retentionClass(r, { purpose: 'other' }, 'Media', []), { name: 'media', keepDays: 30 });
  t.same(retentionClass(r, { purpose: 'other' }, 'Binary', []), { name: 'unlinked', keepDays: 0 });
  t.same(
    retentionClass(r, { purpose: 'patient_consent' }, 'Media', []),
    { name: 'media', keepDays: 30 },
    'two match: the longer, though listed last',
  );
  t.same(
    retentionClass(defaultRetention(), {}, 'DiagnosticReport', []),
    { name: 'clinical-documents', keepDays: 2557 },
    'the default class',
  );
});

t.test('categories of a resource: one CodeableConcept or a list, codes with and without a system', async (t) => {
  t.same(categoriesOf({ category: { coding: [{ system: 's', code: 'c' }, { code: 'd' }, { system: 's' }] } }), ['c', 's|c', 'd']);
  t.same(categoriesOf({ category: [{ text: 'x' }, null, { coding: 'no' }, { coding: [null, { code: 'e' }] }] }), ['e']);
  t.same(categoriesOf({}), []);
});

t.test('X-File-Metadata: the purpose, or a refusal', async (t) => {
  t.equal(uploadPurpose({}), undefined);
  t.equal(uploadPurpose({ 'x-file-metadata': '{"purpose":"a.b:c-d_e"}' }), 'a.b:c-d_e');
  t.equal(uploadPurpose({ 'x-file-metadata': '{}' }), undefined);
  t.throws(() => uploadPurpose({ 'x-file-metadata': '{"purpose":"a","title":"t"}' }), { code: 'BAD_REQUEST', message: /no key 'title'/ });
  t.equal(uploadPurpose({ 'x-file-metadata': '{"purpose":"patient_consent"}' }, ['patient_consent', 'research']), 'patient_consent');
  t.throws(() => uploadPurpose({ 'x-file-metadata': '{"purpose":"marketing"}' }, ['patient_consent']), {
    code: 'BAD_REQUEST',
    message: /not one of content.purposes/,
  });
  t.throws(() => uploadPurpose({ 'x-file-metadata': 'null' }), { code: 'BAD_REQUEST' });
  t.throws(() => uploadPurpose({ 'x-file-metadata': `{"purpose":"${'x'.repeat(65)}"}` }), { code: 'BAD_REQUEST' });
});

t.test('a sweep’s log summary counts, never ids', async (t) => {
  const s = summary({
    claim: 'sweep-1',
    claimed: true,
    dryRun: false,
    leftovers: ['a'],
    spool: [],
    staleClaims: [],
    linked: [{ id: 'id-1', owner: 'Binary/1' }],
    unlinked: [],
    checked: 3,
    deleted: ['id-2', 'id-3'],
    kept: [],
    stoppedEarly: false,
    resumedAt: 'id-4',
  });
  t.match(s, { leftovers: 1, linked: 1, deleted: 2, checked: 3, resumed: true });
  t.notOk(JSON.stringify(s).includes('id-'));
});

t.test('a record with half a retention (class without date, or date without class) is unreadable', async (t) => {
  const { parseMeta, serializeMeta } = await import('../../src/storage/meta.js');
  const info = {
    id: 'ab'.repeat(16),
    size: 1,
    sha256: '0'.repeat(64),
    sha1: 'x',
    contentType: 'text/plain',
    state: 'unlinked' as const,
    owner: 'Binary/1',
    createdAt: new Date(0).toISOString(),
    updatedAt: new Date(0).toISOString(),
  };
  const whole = JSON.parse(serializeMeta({ ...info, retention: 'unlinked', retainUntil: new Date(0).toISOString() })) as Record<
    string,
    unknown
  >;
  t.match(parseMeta(JSON.stringify(whole), info.id).info, { retention: 'unlinked', retainUntil: new Date(0).toISOString() });
  for (const drop of ['retention', 'retainUntil']) {
    const half = { ...whole };
    delete half[drop];
    t.throws(() => parseMeta(JSON.stringify(half), info.id), { code: 'BLOB_UNREADABLE' }, `without ${drop}`);
  }
  t.throws(() => parseMeta(JSON.stringify({ ...whole, purpose: 'has space' }), info.id), { code: 'BLOB_UNREADABLE' });
});
