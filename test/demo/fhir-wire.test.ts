/**
 * The demo upstream's wire rules (src/demo/fhir-wire.ts), which the integration tests of the
 * gateway rely on: which requests are raw Binary reads and writes, and how bodies are read.
 */
import t from 'tap';
import { isBinaryRead, operationOutcome, parseQuery, parseRequestBody, wantsRawBinary } from '../../src/demo/fhir-wire.js';

t.test('a raw Binary read is a GET of Binary/id or Binary/id/_history/v, nothing else', async (t) => {
  t.ok(isBinaryRead('GET', ['Binary', 'b1']));
  t.ok(isBinaryRead('GET', ['Binary', 'b1', '_history', '2']));
  t.notOk(isBinaryRead('HEAD', ['Binary', 'b1']));
  t.notOk(isBinaryRead('GET', ['Binary']));
  t.notOk(isBinaryRead('GET', ['Binary', 'b1', '_history']));
  t.notOk(isBinaryRead('GET', ['Binary', 'b1', 'other', '2']));
  t.notOk(isBinaryRead('GET', ['Patient', 'p1']));
});

t.test('the bytes themselves are wanted only when no Accept range names FHIR or JSON', async (t) => {
  t.ok(wantsRawBinary('application/pdf'));
  t.ok(wantsRawBinary('image/png, */*;q=0.1'));
  t.notOk(wantsRawBinary(undefined));
  t.notOk(wantsRawBinary('  '));
  t.notOk(wantsRawBinary('application/pdf, application/fhir+json'));
  t.notOk(wantsRawBinary('application/fhir+xml'));
  t.notOk(wantsRawBinary('Application/JSON; charset=utf-8'));
});

t.test('a raw Binary write becomes a Binary resource with the bytes as data', async (t) => {
  const bytes = Buffer.from('%PDF-1.4 …');
  const created = parseRequestBody('POST', ['Binary'], { 'content-type': 'application/pdf', 'x-security-context': 'Patient/p1' }, bytes);
  t.same(created, {
    body: {
      resourceType: 'Binary',
      contentType: 'application/pdf',
      data: bytes.toString('base64'),
      securityContext: { reference: 'Patient/p1' },
    },
  });
  const updated = parseRequestBody('PUT', ['Binary', 'b1'], {}, Buffer.alloc(0));
  t.same(updated, { body: { resourceType: 'Binary', contentType: 'application/octet-stream', id: 'b1' } });
  // A FHIR body to Binary is a resource, not raw content.
  const json = parseRequestBody('POST', ['Binary'], { 'content-type': 'application/fhir+json' }, Buffer.from('{"resourceType":"Binary"}'));
  t.same(json, { body: { resourceType: 'Binary' } });
});

t.test('other bodies: JSON parsed, forms read as queries, anything else refused with the status a server gives', async (t) => {
  t.same(parseRequestBody('POST', ['Patient'], {}, Buffer.alloc(0)), { body: undefined });
  t.same(
    parseRequestBody('POST', ['Patient', '_search'], { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from('a=1&a=2&b=3')),
    {
      body: { a: ['1', '2'], b: '3' },
    },
  );
  t.match(parseRequestBody('POST', ['Patient'], { 'content-type': 'text/plain' }, Buffer.from('x')), {
    error: { status: 415, issue: 'not-supported' },
  });
  t.match(parseRequestBody('POST', ['Patient'], { 'content-type': 'application/json' }, Buffer.from('{')), {
    error: { status: 400, issue: 'structure' },
  });
  t.same({ ...parseQuery('x=1&x=2&x=3') }, { x: ['1', '2', '3'] });
  t.same(operationOutcome('not-found', 'gone'), {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code: 'not-found', details: { text: 'gone' } }],
  });
});

t.test('the wire helpers: media types, base paths, discovery documents, answers with and without a body', async (t) => {
  const w = await import('../../src/demo/fhir-wire.js');
  t.equal(w.mediaTypeOf(' Application/FHIR+JSON ; charset=utf-8'), 'application/fhir+json');
  t.ok(w.isJson('application/json') && w.isJson('application/fhir+json') && !w.isJson('text/plain'));
  t.ok(w.isFhirOrJson('application/fhir+xml') && !w.isFhirOrJson('application/pdf'));
  t.same([w.normalizeBasePath('fhir/'), w.normalizeBasePath('/fhir//'), w.normalizeBasePath('/')], ['/fhir', '/fhir', '']);
  const cs = w.capabilityStatement(['Binary', 'Patient']);
  t.match(cs, {
    resourceType: 'CapabilityStatement',
    fhirVersion: '4.0.1',
    rest: [{ resource: [{ type: 'Binary' }, { type: 'Patient' }] }],
  });
  t.match(w.smartConfiguration('http://h:1/fhir'), { issuer: 'http://h:1/auth', token_endpoint: 'http://h:1/auth/token' });

  // Each helper answers on a real socket: body and length, or the head alone.
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const head = req.method === 'HEAD';
    if (req.url === '/raw')
      w.sendRawBinary(res, head, 200, { 'X-A': '1' }, { resourceType: 'Binary', contentType: 'text/plain', data: 'aGk=' });
    else if (req.url === '/resource') w.send(res, head, 201, {}, w.operationOutcome('invalid', 'no'));
    else if (req.url === '/json') w.sendJson(res, head, { a: 1 });
    else void w.readBody(req).then((b) => res.end(`${b.length}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const raw = await fetch(`${base}/raw`);
  t.same([raw.status, raw.headers.get('content-type'), raw.headers.get('x-a'), await raw.text()], [200, 'text/plain', '1', 'hi']);
  const headOnly = await fetch(`${base}/raw`, { method: 'HEAD' });
  t.equal(headOnly.headers.get('content-length'), '2');
  const resource = await fetch(`${base}/resource`);
  t.same(
    [resource.status, resource.headers.get('content-type'), ((await resource.json()) as { resourceType: string }).resourceType],
    [201, w.FHIR_JSON, 'OperationOutcome'],
  );
  t.same(await (await fetch(`${base}/json`)).json(), { a: 1 });
  t.equal(await (await fetch(`${base}/body`, { method: 'POST', body: 'abcde' })).text(), '5');
});
