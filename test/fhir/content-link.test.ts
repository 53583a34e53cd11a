import t from 'tap';
import { contentLink, parseContentLink } from '../../src/fhir/content-link.js';

const BASE = 'https://fhir.example.org/fhir';

t.test('a content link names its owner and path, and reads back as them', async (t) => {
  const link = contentLink(BASE, 'DocumentReference/9', 'DocumentReference.content[1].attachment');
  t.equal(link, `${BASE}/DocumentReference/9/$binary-access-read?path=DocumentReference.content%5B1%5D.attachment`);
  t.same(parseContentLink(BASE, link), { owner: 'DocumentReference/9', path: 'DocumentReference.content[1].attachment' });
  t.equal(contentLink(BASE, 'Binary/b-1', undefined), `${BASE}/Binary/b-1`);
  t.same(parseContentLink(BASE, `${BASE}/Binary/b-1`), { owner: 'Binary/b-1', path: undefined });
});

t.test('anything else is not a content link', async (t) => {
  for (const url of [
    'https://elsewhere.example.org/fhir/Binary/1',
    `${BASE}Binary/1`, // not under the base
    `${BASE}/Patient/1`, // an instance that is not a Binary, without a path
    `${BASE}/Binary/1/_history/2`,
    `${BASE}/DocumentReference/9/$binary-access-read?path=DocumentReference.content&_format=xml`,
    `${BASE}/DocumentReference/9/$binary-access-read?path=%E0%A4%A`, // malformed escape
    `${BASE}/documentReference/9/$binary-access-read?path=x`,
    `${BASE}/DocumentReference/9/$binary-access-write?path=DocumentReference.content`,
  ])
    t.equal(parseContentLink(BASE, url), undefined, url);
});
