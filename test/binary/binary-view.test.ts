// Which view of a Binary a read gets (FHIR R4 "Serving Binary Resources"): the raw content unless
// the client asks for a FHIR format; generic application/json and application/xml ask for the
// resource only when the Binary's own content is not that type (docs/binary.md).
import t from 'tap';
import { binaryView, type BinaryView } from '../../src/binary/binary-view.js';

t.test('by Accept', async (t) => {
  const cases: [accept: string | undefined, contentType: string, want: BinaryView][] = [
    [undefined, 'application/pdf', 'raw'],
    ['', 'application/pdf', 'raw'],
    ['*/*', 'application/pdf', 'raw'],
    ['application/pdf', 'application/pdf', 'raw'],
    ['image/png', 'application/pdf', 'raw'], // not what it is, still not a FHIR request
    ['application/fhir+json', 'application/pdf', 'fhir-json'],
    ['application/json+fhir', 'application/pdf', 'fhir-json'],
    ['Application/FHIR+JSON', 'application/pdf', 'fhir-json'],
    ['application/fhir+json; fhirVersion=4.0', 'application/pdf', 'fhir-json'],
    ['application/fhir+xml', 'application/pdf', 'fhir-xml'],
    ['application/xml+fhir', 'application/pdf', 'fhir-xml'],
    // the preferred entry decides
    ['application/pdf, application/fhir+json;q=0.5', 'application/pdf', 'raw'],
    ['application/pdf;q=0.5, application/fhir+json', 'application/pdf', 'fhir-json'],
    ['*/*;q=0.1, application/fhir+json', 'application/pdf', 'fhir-json'],
    ['application/fhir+json;q=0, */*', 'application/pdf', 'raw'],
    // generic types: the resource, unless the Binary itself is of that type
    ['application/json', 'application/pdf', 'fhir-json'],
    ['application/json', 'application/json', 'raw'],
    ['application/xml', 'application/pdf', 'fhir-xml'],
    ['application/xml', 'application/xml', 'raw'],
    ['text/xml', 'application/pdf', 'fhir-xml'],
    ['text/xml', 'text/xml', 'raw'],
    ['application/xml', 'text/xml', 'fhir-xml'], // only the very same type counts
    ['application/json', 'application/fhir+json', 'fhir-json'],
    ['application/fhir+json', 'application/json', 'fhir-json'], // a FHIR type is always the resource
  ];
  for (const [accept, contentType, want] of cases)
    t.equal(binaryView(accept, '', contentType), want, `Accept ${JSON.stringify(accept)}, a ${contentType} Binary`);
});

t.test('_format overrides Accept', async (t) => {
  const cases: [query: string, accept: string | undefined, contentType: string, want: BinaryView][] = [
    ['_format=json', undefined, 'application/pdf', 'fhir-json'],
    ['_format=json', 'application/pdf', 'application/pdf', 'fhir-json'],
    ['_format=json', undefined, 'application/json', 'fhir-json'], // asked by name: the resource, even for JSON content
    ['_format=xml', 'application/fhir+json', 'application/pdf', 'fhir-xml'],
    ['_format=application%2Ffhir%2Bjson', undefined, 'application/pdf', 'fhir-json'],
    ['_format=application%2Ffhir%2Bxml', undefined, 'application/pdf', 'fhir-xml'],
    ['_format=application/json', undefined, 'application/json', 'fhir-json'],
    ['_format=text/xml', undefined, 'application/pdf', 'fhir-xml'],
    ['_format=text/json', undefined, 'application/pdf', 'fhir-json'],
    ['a=1&_format=JSON', undefined, 'application/pdf', 'fhir-json'],
    // not a FHIR format: Accept decides as if there were no _format
    ['_format=html', undefined, 'application/pdf', 'raw'],
    ['_format=html', 'application/fhir+json', 'application/pdf', 'fhir-json'],
    ['_format=application%2Fpdf', undefined, 'application/pdf', 'raw'],
    ['x_format=json', undefined, 'application/pdf', 'raw'],
  ];
  for (const [query, accept, contentType, want] of cases)
    t.equal(binaryView(accept, query, contentType), want, `${query}, Accept ${JSON.stringify(accept)}, a ${contentType} Binary`);
});
