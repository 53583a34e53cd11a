// SMART discovery (`[base]/.well-known/smart-configuration`) is classified as the capabilities
// interaction: read before a client holds a token, governed by the same rule as `metadata`.
import t from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import { classifyEntry, classifyRequest } from '../../src/fhir/classify.js';

const classify = (method: string, url: string, basePath = '/fhir') => classifyRequest({ method, url, basePath });

/** The code (and Allow header) `fn` is refused with. */
function refusal(fn: () => unknown): [string, string | undefined] {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return [err.code, err.headers['Allow']];
    throw err;
  }
  return ['accepted', undefined];
}

t.test('GET and HEAD of the discovery document are the capabilities interaction', async (t) => {
  for (const method of ['GET', 'HEAD']) {
    t.strictSame(classify(method, '/fhir/.well-known/smart-configuration'), {
      kind: 'capabilities',
      method,
      path: '.well-known/smart-configuration',
      query: '',
    });
  }
  t.strictSame(classify('GET', '/.well-known/smart-configuration', ''), {
    kind: 'capabilities',
    method: 'GET',
    path: '.well-known/smart-configuration',
    query: '',
  });
  t.equal(classifyEntry('GET', '.well-known/smart-configuration').kind, 'capabilities', 'as a batch entry, like metadata');
});

t.test('other methods are 405 with Allow: GET, HEAD; other .well-known documents and shapes are 404', async (t) => {
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
    t.same(
      refusal(() => classify(method, '/fhir/.well-known/smart-configuration')),
      ['METHOD_NOT_ALLOWED', 'GET, HEAD'],
      method,
    );
  }
  for (const url of [
    '/fhir/.well-known',
    '/fhir/.well-known/openid-configuration',
    '/fhir/.well-known/smart-configuration/x',
    '/fhir/.well-known/Smart-Configuration',
    '/fhir/.Well-Known/smart-configuration',
    '/.well-known/smart-configuration', // outside the FHIR base
  ]) {
    t.same(
      refusal(() => classify('GET', url)),
      ['NOT_FOUND', undefined],
      url,
    );
  }
  t.same(
    refusal(() => classify('GET', '/fhir/.well-known/smart-configuration/')),
    ['AMBIGUOUS_PATH', undefined],
    'trailing slash',
  );
  t.same(
    refusal(() => classify('GET', '/fhir/.well-known/%73mart-configuration')),
    ['AMBIGUOUS_PATH', undefined],
    'encoded',
  );
});
