import t from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { classifyRequest } from '../../src/fhir/classify.js';
import type { Interaction } from '../../src/fhir/interaction.js';
import { inRanges, parseAddress } from '../../src/lib/ip.js';
import { Policy } from '../../src/security/policy.js';

/** A Policy from a config fragment (rules and defaultRule), validated like a file. */
function policy(fragment: Record<string, unknown>): Policy {
  const raw = {
    upstream: { url: 'http://upstream.test/fhir' },
    auth: { issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' },
    ...fragment,
  };
  return new Policy(buildConfig(raw, '(policy test)', process.cwd()));
}

const req = (method: string, url: string): Interaction => classifyRequest({ method, url, basePath: '' });

/** One request of every shape, system-level ones included. */
const SHAPES = {
  capabilities: req('GET', '/metadata'),
  batch: req('POST', '/'),
  systemSearch: req('GET', '/?_type=Patient'),
  systemHistory: req('GET', '/_history'),
  systemOperation: req('POST', '/$export'),
  typeOperation: req('GET', '/Patient/$everything'),
  instanceOperation: req('GET', '/Patient/1/$everything'),
  binaryWrite: req('POST', '/Binary/$binary-access-write'),
  read: req('GET', '/Patient/1'),
  vread: req('GET', '/Patient/1/_history/2'),
  obsRead: req('GET', '/Observation/1'),
  search: req('GET', '/Patient?name=x'),
  postSearch: req('POST', '/Patient/_search'),
  compartmentSearch: req('GET', '/Patient/1/Observation'),
  typeHistory: req('GET', '/Patient/_history'),
  create: req('POST', '/Patient'),
  update: req('PUT', '/Patient/1'),
  patch: req('PATCH', '/Patient/1'),
  delete: req('DELETE', '/Observation/1'),
} as const;
type Shape = keyof typeof SHAPES;
const ALL = Object.keys(SHAPES) as Shape[];

/** Which shapes the policy's rule named `name` applies to. */
function matched(p: Policy, name: string): Shape[] {
  return ALL.filter((s) => p.ruleFor(SHAPES[s]).name === name);
}

t.test('the classifier gives the shapes this file relies on', async (t) => {
  t.equal(SHAPES.systemSearch.resourceType, undefined);
  t.equal(SHAPES.systemOperation.resourceType, undefined);
  t.equal(SHAPES.systemOperation.operation, 'export');
  t.equal(SHAPES.compartmentSearch.resourceType, 'Observation');
  t.equal(SHAPES.batch.kind, 'batch');
});

t.test('no rules: everything gets the defaultRule', async (t) => {
  const p = policy({});
  for (const s of ALL) t.equal(p.ruleFor(SHAPES[s]), p.defaultRule, s);
  t.equal(p.defaultRule.name, 'defaultRule');
  // Fail closed: the schema's defaults for the defaultRule.
  t.same(p.defaultRule.require, { https: true, auth: true, scopes: [], smart: true, ipAllow: [], ipDeny: [] });
  t.same(p.defaultRule.limits, { maxRequestBytes: 10 * 1024 * 1024 });
  t.equal(p.defaultRule.forwardAuthorization, false);
});

t.test('first match wins, in file order', async (t) => {
  const p = policy({
    rules: [
      { name: 'patient-reads', match: { interactions: ['read'], resourceTypes: ['Patient'] } },
      { name: 'all-reads', match: { interactions: ['read', 'vread'] } },
      { name: 'patient-anything', match: { resourceTypes: ['Patient'] } },
      { name: 'catch-all', match: {} },
    ],
  });
  t.equal(p.ruleFor(SHAPES.read).name, 'patient-reads', 'the narrow rule listed first wins');
  t.equal(p.ruleFor(SHAPES.obsRead).name, 'all-reads');
  t.equal(p.ruleFor(SHAPES.vread).name, 'all-reads', 'a later, narrower rule does not override an earlier match');
  t.equal(p.ruleFor(SHAPES.update).name, 'patient-anything');
  t.equal(p.ruleFor(SHAPES.delete).name, 'catch-all');
  t.equal(p.ruleFor(SHAPES.capabilities).name, 'catch-all', 'an empty match matches everything, system-level included');

  const reversed = policy({
    rules: [
      { name: 'all-reads', match: { interactions: ['read', 'vread'] } },
      { name: 'patient-reads', match: { interactions: ['read'], resourceTypes: ['Patient'] } },
    ],
  });
  t.equal(reversed.ruleFor(SHAPES.read).name, 'all-reads', 'order, not specificity, decides');
  t.same(matched(reversed, 'patient-reads'), [], 'a rule shadowed by an earlier one never applies');
});

t.test('all match conditions must hold (AND), each list is OR', async (t) => {
  const p = policy({ rules: [{ name: 'r', match: { interactions: ['create', 'update'], resourceTypes: ['Patient', 'Binary'] } }] });
  t.same(matched(p, 'r'), ['create', 'update']);
  t.equal(p.ruleFor(req('POST', '/Binary')).name, 'r');
  t.equal(p.ruleFor(req('POST', '/Observation')).name, 'defaultRule');
});

t.test('a rule naming resourceTypes never matches a system-level interaction', async (t) => {
  const p = policy({ rules: [{ name: 'patient', match: { resourceTypes: ['Patient'] }, require: { auth: false } }] });
  t.same(
    matched(p, 'patient').sort(),
    ['create', 'instanceOperation', 'patch', 'postSearch', 'read', 'search', 'typeHistory', 'typeOperation', 'update', 'vread'].sort(),
  );
  for (const s of ['capabilities', 'batch', 'systemSearch', 'systemHistory', 'systemOperation'] as const) {
    t.equal(p.ruleFor(SHAPES[s]).name, 'defaultRule', `${s} is not loosened`);
  }
  t.equal(p.ruleFor(SHAPES.compartmentSearch).name, 'defaultRule', 'Patient/1/Observation is a search on Observation, not Patient');
});

t.test("'*' matches every resource type, still never a system-level interaction", async (t) => {
  const p = policy({
    rules: [{ name: 'any-type-search', match: { interactions: ['search', 'history'], resourceTypes: ['*'] }, require: { auth: false } }],
  });
  t.same(matched(p, 'any-type-search').sort(), ['compartmentSearch', 'postSearch', 'search', 'typeHistory'].sort());
  t.equal(p.ruleFor(req('GET', '/Observation?code=x')).name, 'any-type-search');
  t.equal(p.ruleFor(SHAPES.systemSearch).name, 'defaultRule', 'GET /?_type=… is not a type-level search');
  t.equal(p.ruleFor(SHAPES.systemHistory).name, 'defaultRule', 'GET /_history is not a type-level history');

  const mixed = policy({ rules: [{ name: 'mixed', match: { resourceTypes: ['Patient', '*'] } }] });
  t.equal(mixed.ruleFor(SHAPES.obsRead).name, 'mixed', "'*' among named types still means any type");
  t.equal(mixed.ruleFor(SHAPES.capabilities).name, 'defaultRule');
});

t.test('a rule naming operations never matches a non-operation', async (t) => {
  const p = policy({
    rules: [
      { name: 'everything', match: { operations: ['everything'] } },
      { name: 'export', match: { interactions: ['operation'], operations: ['export'] } },
      { name: 'any-op', match: { interactions: ['operation'] } },
    ],
  });
  t.same(matched(p, 'everything'), ['typeOperation', 'instanceOperation']);
  t.same(matched(p, 'export'), ['systemOperation']);
  t.same(matched(p, 'any-op'), ['binaryWrite'], 'interactions: [operation] alone matches any other operation');
  for (const s of ['read', 'search', 'create', 'capabilities', 'batch', 'postSearch'] as const) {
    t.equal(p.ruleFor(SHAPES[s]).name, 'defaultRule', `${s} is not an operation`);
  }
  // An operations rule also naming resourceTypes: both must hold.
  const typed = policy({ rules: [{ name: 'binary-write', match: { operations: ['binary-access-write'], resourceTypes: ['Binary'] } }] });
  t.same(matched(typed, 'binary-write'), ['binaryWrite']);
  t.equal(typed.ruleFor(req('POST', '/$binary-access-write')).name, 'defaultRule', 'the system-level form is not the Binary one');
  t.equal(typed.ruleFor(req('POST', '/DocumentReference/$binary-access-write')).name, 'defaultRule');
});

t.test('a rule inherits every unset field from defaultRule', async (t) => {
  const p = policy({
    defaultRule: {
      require: { https: true, auth: true, smart: true, scopes: ['base'], ipAllow: ['10.0.0.0/8'], ipDeny: ['10.9.0.0/16'] },
      limits: { maxRequestBytes: 1000 },
      forwardAuthorization: true,
    },
    rules: [
      { name: 'public-capabilities', match: { interactions: ['capabilities'] }, require: { auth: false, smart: false } },
      {
        name: 'uploads',
        match: { interactions: ['create'], resourceTypes: ['Binary'] },
        require: { scopes: ['files.write'] },
        limits: { maxRequestBytes: 5000 },
        forwardAuthorization: false,
      },
      { name: 'ward', match: { interactions: ['delete'] }, require: { ipAllow: ['192.168.1.0/24'] } },
    ],
  });
  const cap = p.ruleFor(SHAPES.capabilities);
  t.equal(cap.name, 'public-capabilities');
  t.same(cap.require, { https: true, auth: false, smart: false, scopes: ['base'], ipAllow: ['10.0.0.0/8'], ipDeny: ['10.9.0.0/16'] });
  t.same(cap.limits, { maxRequestBytes: 1000 });
  t.equal(cap.forwardAuthorization, true, 'forwardAuthorization inherited');

  const up = p.ruleFor(req('POST', '/Binary'));
  t.equal(up.name, 'uploads');
  t.same(up.require.scopes, ['files.write'], 'a list set on the rule replaces the default list');
  t.equal(up.require.smart, true);
  t.same(up.limits, { maxRequestBytes: 5000 });
  t.equal(up.forwardAuthorization, false, 'an explicit false is kept, not replaced by the default true');

  const ward = p.ruleFor(SHAPES.delete);
  t.equal(ward.name, 'ward');
  const ip = (s: string) => parseAddress(s)!;
  t.ok(inRanges(ip('192.168.1.7'), ward.ipAllow), 'the rule ipAllow is parsed');
  t.notOk(inRanges(ip('10.1.2.3'), ward.ipAllow), 'and replaces the default ipAllow');
  t.ok(inRanges(ip('10.9.1.1'), ward.ipDeny), 'ipDeny inherited from the default, parsed');

  t.ok(Object.isFrozen(cap), 'effective rules are frozen');
  t.equal(p.ruleFor(SHAPES.read), p.defaultRule, 'unmatched → the defaultRule');
  t.same(p.defaultRule.require.scopes, ['base']);
});

t.test('the shipped default policy: which rule each shape gets', async (t) => {
  const { parse } = await import('yaml');
  const { readFileSync } = await import('node:fs');
  const raw = parse(readFileSync(new URL('../../policies/default.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  const p = policy({ rules: raw['rules'], defaultRule: raw['defaultRule'] });
  t.equal(p.ruleFor(SHAPES.capabilities).name, 'capabilities');
  t.equal(p.ruleFor(SHAPES.capabilities).require.auth, false);
  t.equal(p.ruleFor(SHAPES.capabilities).require.https, true, 'public, but still only over HTTPS');
  t.equal(p.ruleFor(req('POST', '/Binary')).name, 'binary-writes');
  t.equal(p.ruleFor(req('PUT', '/DocumentReference/1')).name, 'binary-writes');
  t.equal(p.ruleFor(SHAPES.binaryWrite).name, 'binary-access-write');
  t.equal(p.ruleFor(req('POST', '/Binary/$binary-access-read')).name, 'defaultRule');
  t.equal(p.ruleFor(SHAPES.create).name, 'fhir-writes');
  t.equal(p.ruleFor(SHAPES.delete).name, 'fhir-writes');
  t.equal(p.ruleFor(SHAPES.read).name, 'defaultRule');
  t.equal(p.ruleFor(SHAPES.batch).name, 'defaultRule');
  t.equal(p.ruleFor(req('POST', '/Binary')).limits.maxRequestBytes, 104857600);
  t.equal(p.ruleFor(SHAPES.create).limits.maxRequestBytes, 10485760);
});
