// Content negotiation, one way for every answer the gateway writes: which offered type the client
// prefers, whether it takes FHIR JSON, what format its errors come in; `_format` overrides Accept.
import t from 'tap';
import { acceptsJson, formatParam, JSON_TYPES, negotiate, outcomeFormat, preferredTypes, XML_TYPES } from '../../src/lib/accept.js';

t.test('negotiate: the preferred offered type; ties go to the first offered; none acceptable is undefined', async (t) => {
  const offered = ['application/fhir+json', 'application/pdf', 'text/plain'];
  const cases: [accept: string | undefined, want: string | undefined][] = [
    [undefined, 'application/fhir+json'], // no Accept accepts anything: the first offered
    ['', 'application/fhir+json'],
    ['   ', 'application/fhir+json'],
    ['*/*', 'application/fhir+json'],
    ['application/pdf', 'application/pdf'],
    ['APPLICATION/PDF', 'application/pdf'],
    ['text/*', 'text/plain'],
    ['text/plain;q=0.5, application/pdf', 'application/pdf'],
    ['text/plain, application/pdf;q=0.9', 'text/plain'],
    ['application/*', 'application/fhir+json'], // a tie: the first offered
    ['*/*;q=0.1, text/plain', 'text/plain'],
    ['image/png', undefined],
    ['application/pdf;q=0', undefined],
    ['*/*, application/fhir+json;q=0', 'application/pdf'], // the specific q=0 wins over */*
  ];
  for (const [accept, want] of cases) t.equal(negotiate(accept, offered), want, `Accept ${JSON.stringify(accept)}`);
});

t.test('preferredTypes: the client’s ranges, most preferred first, lowercase; */* when it sends none', async (t) => {
  t.same(preferredTypes(undefined), ['*/*']);
  t.same(preferredTypes(''), ['*/*']);
  t.same(preferredTypes('Application/PDF'), ['application/pdf']);
  t.same(preferredTypes('text/*;q=0.5, application/fhir+json'), ['application/fhir+json', 'text/*']);
  t.same(preferredTypes('a/b;q=0.1, c/d;q=0.9, e/f'), ['e/f', 'c/d', 'a/b']);
  t.same(preferredTypes('a/b;q=0, c/d'), ['c/d'], 'q=0 means not acceptable');
});

t.test('formatParam: _format from a raw query, decoded, lowercase, without parameters', async (t) => {
  const cases: [query: string, want: string | undefined][] = [
    ['', undefined],
    ['name=x', undefined],
    ['_format=json', 'json'],
    ['_format=JSON', 'json'],
    ['a=1&_format=xml', 'xml'],
    ['a=1;_format=xml', 'xml'],
    ['_format=application%2Ffhir%2Bjson', 'application/fhir+json'],
    ['_format=application/fhir%2Bxml', 'application/fhir+xml'],
    ['_format=application%2Fjson%3B%20charset%3Dutf-8', 'application/json'],
    ['_format=%20json%20', 'json'],
    ['_format=', ''],
    ['_format=json&_format=xml', 'json'], // the first one
    ['x_format=xml', undefined], // another parameter whose name ends the same
    ['_formats=xml', undefined],
    ['_format=%E0%A4%A', undefined], // undecodable: as if absent
  ];
  for (const [query, want] of cases) t.equal(formatParam(query), want, JSON.stringify(query));
});

t.test('acceptsJson: _format first, else Accept; no Accept takes JSON', async (t) => {
  const cases: [accept: string | undefined, query: string, want: boolean][] = [
    [undefined, '', true],
    ['', '', true],
    ['*/*', '', true],
    ['application/fhir+json', '', true],
    ['application/json', '', true],
    ['application/json+fhir', '', true],
    ['application/*', '', true],
    ['application/fhir+xml', '', false],
    ['application/xml', '', false],
    ['text/html', '', false],
    ['application/fhir+xml, application/fhir+json;q=0.1', '', true], // takes JSON at all
    ['application/fhir+xml', '_format=json', true],
    ['application/fhir+json', '_format=xml', false],
    ['application/fhir+json', '_format=text/xml', false],
    ['application/fhir+json', '_format=application%2Ffhir%2Bxml', false],
    ['text/html', '_format=application/fhir%2Bjson', true],
  ];
  for (const [accept, query, want] of cases) {
    t.equal(acceptsJson(accept, query), want, `Accept ${JSON.stringify(accept)}, ${JSON.stringify(query)}`);
    t.equal(acceptsJson(accept, query), want, `the same again (remembered): ${JSON.stringify(accept)}`);
  }
});

t.test('acceptsJson: the memory of Accept values is bounded and never changes an answer', async (t) => {
  for (let i = 0; i < 600; i++) {
    const json = i % 2 === 0;
    const accept = `${json ? 'application/fhir+json' : 'application/fhir+xml'}, text/x-${i};q=0.5`;
    if (acceptsJson(accept, '') !== json) {
      t.fail(`answer ${i} changed`);
      return;
    }
  }
  t.equal(acceptsJson('application/fhir+xml, text/x-1;q=0.5', ''), false, 'an early value, forgotten, is still answered right');
  t.equal(acceptsJson('application/fhir+json, text/x-0;q=0.5', ''), true);
});

t.test('outcomeFormat: JSON whenever the client takes JSON at all; XML only for XML-only clients', async (t) => {
  const cases: [accept: string | undefined, query: string, want: 'json' | 'xml'][] = [
    [undefined, '', 'json'],
    ['application/fhir+json', '', 'json'],
    ['application/fhir+xml', '', 'xml'],
    ['application/xml', '', 'xml'],
    ['text/xml', '', 'xml'],
    ['application/xml+fhir', '', 'xml'],
    ['application/fhir+xml, application/fhir+json;q=0.1', '', 'json'],
    ['text/html', '', 'json'], // neither: an error either way, in JSON
    ['image/png', '', 'json'],
    ['application/fhir+json', '_format=xml', 'xml'],
    ['application/fhir+xml', '_format=json', 'json'],
    [undefined, '_format=application%2Fxml', 'xml'],
    [undefined, '_format=html', 'json'],
  ];
  for (const [accept, query, want] of cases) t.equal(outcomeFormat(accept, query), want, `Accept ${JSON.stringify(accept)}, ${query}`);
});

t.test('what a client that takes anything gets: FHIR JSON (or FHIR XML) before the generic types', async (t) => {
  t.equal(negotiate('*/*', JSON_TYPES), 'application/fhir+json');
  t.equal(negotiate('application/*', JSON_TYPES), 'application/fhir+json');
  t.equal(negotiate('*/*', XML_TYPES), 'application/fhir+xml');
  t.equal(negotiate('application/json', JSON_TYPES), 'application/json', 'generic JSON is still JSON');
  t.equal(negotiate('text/xml', XML_TYPES), 'text/xml');
});
