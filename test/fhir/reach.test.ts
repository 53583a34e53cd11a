import t from 'tap';
import { classifyEntry, classifyRequest } from '../../src/fhir/classify.js';
import { OWN_ONLY, reachOf, type OperationReturns, type Reach } from '../../src/fhir/reach.js';

const req = (url: string, method = 'GET', headers?: Record<string, string>) =>
  classifyRequest({ method, url, basePath: '', ...(headers ? { headers } : {}) });

function types(r: Reach): string[] | 'any' {
  return r.any ? 'any' : [...r.types].sort();
}

t.test('a request without parameters reaches only its own type, without allocating', async (t) => {
  for (const url of ['/Patient/1', '/Patient/1/_history/2', '/Observation', '/Patient/_history']) {
    t.equal(reachOf(req(url)), OWN_ONLY, url);
  }
  t.equal(reachOf(req('/Patient', 'POST')), OWN_ONLY);
  t.equal(reachOf(req('/Patient/1', 'PUT')), OWN_ONLY);
  t.equal(reachOf(req('/metadata?_include=Observation:device:Device')), OWN_ONLY, 'the CapabilityStatement ignores parameters');
  t.equal(reachOf(req('/', 'POST')), OWN_ONLY, 'a Bundle is reached entry by entry');
});

t.test('parameters that only shape the own type reach nothing else', async (t) => {
  t.equal(reachOf(req('/Observation?code=x&_count=5&_sort=-date&_elements=code&_summary=true&value-quantity=5.4')), OWN_ONLY);
  t.same(types(reachOf(req('/Observation?_include=Observation:has-member:Observation'))), ['Observation'], 'own type named: reached');
  t.same(types(reachOf(req('/Observation?_revinclude=Observation:derived-from'))), ['Observation']);
  t.same(types(reachOf(req('/Bundle/1'))), 'any', 'a stored Bundle carries any type');
  t.same(types(reachOf(req('/Bundle?_id=1'))), 'any');
});

t.test('_include: the target type, or every type when it is not named', async (t) => {
  t.same(types(reachOf(req('/Observation?_id=O&_include=Observation:device:Device'))), ['Device']);
  t.same(types(reachOf(req('/Observation?_include:iterate=Observation:device:Device&_include=Observation:subject:Patient'))), [
    'Device',
    'Patient',
  ]);
  t.same(types(reachOf(req('/Observation?_id=O&_include=Observation:device'))), 'any', 'no target');
  t.same(types(reachOf(req('/Observation?_include=*'))), 'any');
  t.same(types(reachOf(req('/Observation?_include:recurse=Observation:subject'))), 'any');
  t.same(types(reachOf(req('/Observation?%5Finclude=Observation:subject'))), 'any', 'percent-encoded name');
  t.same(types(reachOf(req('/Observation?code=x;_include=Observation:subject:Patient'))), ['Patient'], "behind ';'");
  t.same(types(reachOf(req('/Observation?_include=Observation:subject:patient'))), 'any', 'not an R4 type');
  t.match(reachOf(req('/Observation?_include=Observation:device')).why, /name the target type/);
});

t.test('_revinclude: the source type', async (t) => {
  t.same(types(reachOf(req('/Patient?_id=A&_revinclude=DiagnosticReport:subject'))), ['DiagnosticReport']);
  t.same(types(reachOf(req('/Patient?_revinclude:iterate=Provenance:target:Patient'))), ['Provenance']);
  t.same(types(reachOf(req('/Patient?_revinclude=*'))), 'any');
  t.same(types(reachOf(req('/Patient?_revinclude=Observation'))), 'any', 'malformed');
});

t.test('system level: _type bounds the set; without it every type', async (t) => {
  t.same(types(reachOf(req('/?_type=Patient,Device'))), ['Device', 'Patient']);
  t.same(types(reachOf(req('/?_id=1'))), 'any');
  t.same(types(reachOf(req('/_history'))), 'any');
  t.same(types(reachOf(req('/?_type=Patient,device'))), 'any');
  t.same(types(reachOf(req('/Observation?_type=Device'))), ['Device'], 'on a type search too');
});

t.test('a compartment search reaches its owner type', async (t) => {
  t.same(types(reachOf(req('/Device/1/Observation'))), ['Device']);
  t.same(types(reachOf(req('/Patient/1/Observation'))), ['Patient']);
});

t.test('control parameters in another case or padded are recognised (a lenient upstream reads them)', async (t) => {
  t.same(types(reachOf(req('/Observation?_INCLUDE=Observation:device'))), 'any');
  t.same(types(reachOf(req('/Observation?%20_include=Observation:device:Device'))), ['Device']);
  t.same(types(reachOf(req('/Observation?_Has:Device:patient:x=1'))), ['Device']);
  t.same(types(reachOf(req('/Observation?_sort=device.identifier'))), 'any', 'a chained _sort');
  t.same(types(reachOf(req('/Observation?_sort=-date,code'))), [], 'a plain _sort');
});

t.test('chains, _has, _list, _filter, _query, _contained', async (t) => {
  t.same(
    types(reachOf(req('/Observation?subject:Patient._has:Device:patient:identifier=d'))),
    ['Device', 'Patient'],
    '_has at the end of a chain',
  );
  t.same(
    types(reachOf(req('/Patient?_has:Observation:patient:device:Device.identifier=d'))),
    ['Device', 'Observation'],
    'a chain at the end of _has',
  );
  t.same(types(reachOf(req('/Patient?_has:Observation:patient:device.identifier=d'))), 'any', 'an untyped chain at the end of _has');
  t.same(types(reachOf(req('/Observation?subject:Patient.name=Bob'))), ['Patient']);
  t.same(types(reachOf(req('/Observation?subject:Patient.organization:Organization.name=x'))), ['Organization', 'Patient']);
  t.same(types(reachOf(req('/Observation?subject.name=Bob'))), 'any');
  t.same(types(reachOf(req('/Patient?_has:Observation:patient:code=x'))), ['Observation']);
  t.same(types(reachOf(req('/Patient?_has:Observation:patient:_has:AuditEvent:entity:agent=x'))), ['AuditEvent', 'Observation']);
  t.same(types(reachOf(req('/Patient?_has:observation:patient:code=x'))), 'any');
  t.same(types(reachOf(req('/Patient?_list=42'))), ['List']);
  t.same(types(reachOf(req('/Patient?_filter=name%20eq%20x'))), 'any');
  t.same(types(reachOf(req('/Patient?_query=custom'))), 'any');
  t.same(types(reachOf(req('/Observation?_contained=true'))), 'any');
  t.same(types(reachOf(req('/Observation?_contained=false'))), [], 'the default');
});

t.test('POST _search: its parameters are in the body, unseen', async (t) => {
  t.same(types(reachOf(req('/Observation/_search', 'POST'))), 'any');
  t.match(reachOf(req('/Observation/_search', 'POST')).why, 'POST _search');
});

t.test('conditional criteria are searches: header, entry field and URL', async (t) => {
  t.same(types(reachOf(req('/Observation', 'POST', { 'if-none-exist': 'subject:Patient.name=Bob' }))), ['Patient']);
  t.same(types(reachOf(req('/Observation', 'POST', { 'if-none-exist': 'Observation?subject.name=Bob' }))), 'any');
  t.same(types(reachOf(req('/Observation', 'POST', { 'if-none-exist': 'identifier=x' }))), []);
  t.same(types(reachOf(classifyEntry('POST', 'Observation', { ifNoneExist: 'subject:Patient.name=Bob' }))), ['Patient']);
  t.same(types(reachOf(req('/Observation?subject:Patient.name=Bob', 'PUT'))), ['Patient']);
  t.same(types(reachOf(req('/Observation?_has:Provenance:target:agent=x', 'DELETE'))), ['Provenance']);
  t.same(types(reachOf(classifyEntry('DELETE', 'Observation?subject:Patient.name=Bob'))), ['Patient']);
});

t.test('operations: built-ins, declarations, and every type for the unknown', async (t) => {
  t.same(types(reachOf(req('/Binary/1/$binary-access-read'))), []);
  t.same(types(reachOf(req('/Observation/$validate', 'POST'))), []);
  for (const url of [
    '/Patient/1/$everything',
    '/$graphql?query=x',
    '/Patient/1/$graphql',
    '/Patient/$export',
    '/Group/1/$export',
    '/$export',
  ]) {
    t.same(types(reachOf(req(url))), 'any', url);
  }
  t.same(types(reachOf(req('/$process-message', 'POST'))), 'any');
  t.same(types(reachOf(req('/Patient/1/$my-op'))), 'any', 'unknown');
  const declared = new Map<string, OperationReturns>([
    ['my-op', ['Observation', 'Patient']],
    ['graphql', 'own'],
  ]);
  t.same(types(reachOf(req('/Patient/1/$my-op'), declared)), ['Observation', 'Patient']);
  t.same(types(reachOf(req('/Patient/1/$graphql'), declared)), [], 'a declaration replaces a built-in');
  t.match(reachOf(req('/Patient/1/$everything')).why, '$everything');
});

t.test('_include=Source:patient without a target reaches every type: a Reference(Patient) element can hold any reference', async (t) => {
  // Neither the gateway nor the upstream stops `AllergyIntolerance.patient` holding `Device/1`, and the include follows it.
  t.same(types(reachOf(req('/AllergyIntolerance?_include=AllergyIntolerance:patient'))), 'any');
  t.same(types(reachOf(req('/AllergyIntolerance?_include=AllergyIntolerance:patient:Patient'))), ['Patient']);
});

t.test('a page of an earlier search: only paging and formatting parameters beside one _getpages', async (t) => {
  const paged = (url: string) => reachOf(req(url)).paged === true;
  t.ok(paged('/?_getpages=abc&_getpagesoffset=20&_count=20&_pretty=true&_bundletype=searchset'), "HAPI's next link");
  t.ok(paged('/?_getpages=abc&_pageId=p2&_format=json&_elements=id&_summary=count'));
  t.ok(reachOf(req('/?_getpages=abc')).any, 'it may carry any type');
  t.notOk(paged('/?_getpages=abc&_getpages=def'), 'two page ids');
  t.notOk(paged('/?_getpages=abc&_include=*'), 'a search parameter beside it');
  t.notOk(paged('/?_getpages=abc&_type=Device'));
  t.notOk(paged('/Patient?_getpages=abc'), 'on a type');
  t.notOk(paged('/_history?_getpages=abc'), 'a history');
  t.notOk(paged('/?_getpagesx=abc'), 'another name');
});
