// Media types as the content checks compare them: essence, allow-list patterns (wildcards and
// aliases), which types are checked as text, and which are always served as a download.
import t from 'tap';
import { allowed, canonical, essence, isActiveContent, isTextual, sameType } from '../../src/content/media-type.js';

t.test('essence: type/subtype, lowercase, without parameters; undefined when it is not a media type', async (t) => {
  const cases: [string | undefined, string | undefined][] = [
    ['text/plain', 'text/plain'],
    ['Text/Plain; charset=UTF-8', 'text/plain'],
    ['  image/PNG  ', 'image/png'],
    ['application/fhir+json;fhirVersion=4.0', 'application/fhir+json'],
    ['application/vnd.ms-excel', 'application/vnd.ms-excel'],
    ['image/svg+xml ; q=1', 'image/svg+xml'],
    [undefined, undefined],
    ['', undefined],
    ['text', undefined],
    ['text/', undefined],
    ['/plain', undefined],
    ['text/plain/extra', undefined],
    ['text/plain, text/html', undefined], // a list is not one type
    ['*/*', undefined],
    ['image/*', undefined], // a pattern, not a type
    ['text /plain', undefined],
    ['text/pl ain', undefined],
    ['"text/plain"', undefined],
    ['téxt/plain', undefined],
  ];
  for (const [input, want] of cases) t.equal(essence(input), want, JSON.stringify(input));
});

t.test('canonical and sameType fold registered aliases together, and nothing else', async (t) => {
  t.equal(canonical('image/dicom'), 'application/dicom');
  t.equal(canonical('image/jpg'), 'image/jpeg');
  t.equal(canonical('audio/x-wav'), 'audio/wav');
  t.equal(canonical('image/png'), 'image/png', 'a type without alias is itself');
  t.ok(sameType('image/dicom', 'application/dicom'));
  t.ok(sameType('image/pjpeg', 'image/jpg'), 'two aliases of one type');
  t.notOk(sameType('image/png', 'image/jpeg'));
  t.notOk(sameType('text/plain', 'text/html'));
});

t.test('allowed: exact types, type/* wildcards and aliases', async (t) => {
  const cases: [type: string, patterns: string[], ok: boolean][] = [
    ['application/pdf', ['application/pdf'], true],
    ['application/pdf', ['text/plain'], false],
    ['application/pdf', [], false],
    ['image/png', ['image/*'], true],
    ['image/jpeg', ['application/pdf', 'image/*'], true],
    ['imagex/png', ['image/*'], false], // the wildcard is the whole major type
    ['text/plain', ['image/*'], false],
    ['video/mp4', ['audio/*', 'video/*'], true],
    // aliases, either side
    ['image/dicom', ['application/dicom'], true],
    ['application/dicom', ['image/dicom'], true],
    ['image/dicom', ['image/*'], true],
    ['image/dicom', ['application/*'], true],
    ['image/jpg', ['image/jpeg'], true],
    ['image/jpeg', ['image/pjpeg'], true],
    ['audio/mp3', ['audio/mpeg'], true],
    ['application/x-pdf', ['application/pdf'], true],
    ['image/x-png', ['image/png'], true],
    ['image/gif', ['image/png'], false],
  ];
  for (const [type, patterns, ok] of cases) t.equal(allowed(type, patterns), ok, `${type} in [${patterns.join(', ')}]`);
});

t.test('allowed: a wildcard never admits a structured-syntax subtype (+json, +xml); naming it does', async (t) => {
  for (const type of ['image/svg+xml', 'image/x+json', 'audio/x+json', 'video/x+xml', 'application/fhir+json', 'application/xhtml+xml']) {
    const major = type.split('/')[0];
    t.equal(allowed(type, [`${major}/*`]), false, `${type} not in ${major}/*`);
    t.equal(allowed(type, [type]), true, `${type} listed by name`);
  }
  t.equal(allowed('image/svg+xml', ['image/*', 'image/svg+xml']), true, 'a wildcard beside the name does not hide it');
});

t.test('isTextual: the types without a signature, checked as UTF-8 text', async (t) => {
  for (const type of [
    'text/plain',
    'text/html',
    'text/csv',
    'text/javascript',
    'application/json',
    'application/fhir+json',
    'image/x+json',
    'application/xml',
    'image/svg+xml',
    'application/javascript',
  ])
    t.equal(isTextual(type), true, type);
  for (const type of [
    'application/pdf',
    'image/png',
    'application/octet-stream',
    'application/dicom',
    'application/jsonx',
    'application/json-patch', // not a +json suffix
    'application/xml-dtd',
    'texture/plain',
  ])
    t.equal(isTextual(type), false, type);
});

t.test('isActiveContent: what a browser may run or render with script is never served inline', async (t) => {
  for (const type of [
    'text/html',
    'application/xhtml+xml',
    'image/svg+xml',
    'text/xml',
    'application/xml',
    'application/atom+xml',
    'application/fhir+xml',
    'text/javascript',
    'application/javascript',
    'application/ecmascript',
    'text/ecmascript',
  ])
    t.equal(isActiveContent(type), true, type);
  for (const type of ['text/plain', 'text/csv', 'application/json', 'application/fhir+json', 'application/pdf', 'image/png', 'image/jpeg'])
    t.equal(isActiveContent(type), false, type);
});
