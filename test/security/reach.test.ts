import t from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { classifyRequest } from '../../src/fhir/classify.js';
import { parseAddress } from '../../src/lib/ip.js';
import type { CheckInput, Principal } from '../../src/security/checks.js';
import type { RequestContext } from '../../src/security/client.js';
import type { VerifiedToken } from '../../src/security/jwt.js';
import { runChecks } from '../../src/security/pipeline.js';
import { parseScopes } from '../../src/security/scopes.js';
import { buildSettings, type Settings } from '../../src/security/settings.js';

/** Settings from a config fragment, validated like a file; no token is ever verified here (the principal is given). */
function settings(fragment: Record<string, unknown>): Settings {
  const raw = {
    upstream: { url: 'http://upstream.test/fhir' },
    auth: { issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' },
    ...fragment,
  };
  return buildSettings(buildConfig(raw, '(reach test)', process.cwd()));
}

interface Caller {
  readonly scope?: string;
  readonly ip?: string;
  readonly secure?: boolean;
  readonly headers?: Record<string, string>;
  readonly method?: string;
  readonly patient?: string;
}

/** Runs the whole pipeline on one request; resolves to 'ok' or the refusal's code and detail. */
async function decide(s: Settings, url: string, c: Caller = {}): Promise<string> {
  const interaction = classifyRequest({ method: c.method ?? 'GET', url, basePath: '', headers: c.headers ?? {} });
  const principal: Principal =
    c.scope === undefined
      ? { token: undefined, scopes: undefined, patient: undefined }
      : { token: { claims: {} } as VerifiedToken, scopes: parseScopes({ scope: c.scope }), patient: c.patient };
  const ctx = { clientIp: parseAddress(c.ip ?? '10.0.0.5'), secure: c.secure ?? true, connection: {} } as unknown as RequestContext;
  const input: CheckInput = {
    ctx,
    interaction,
    rule: s.policy.ruleFor(interaction),
    authorization: undefined,
    contentLength: undefined,
    principal,
  };
  try {
    await runChecks(input, s);
    return 'ok';
  } catch (err) {
    const e = err as { code: string; detail?: string };
    return `${e.code}: ${e.detail ?? ''}`;
  }
}

const LAN_DEVICES = {
  defaultRule: { require: { https: false, smart: true } },
  rules: [
    { name: 'devices-from-lan', match: { resourceTypes: ['Device'] }, require: { ipAllow: ['10.0.0.0/8'] } },
    { name: 'reports-over-https', match: { resourceTypes: ['DiagnosticReport'], interactions: ['read'] }, require: { https: true } },
  ],
};
const ALL = 'user/*.cruds';

t.test('a type rule holds for every request that reaches the type (issue 12, hole 1)', async (t) => {
  const s = settings(LAN_DEVICES);
  const outside = { scope: ALL, ip: '192.0.2.7' };
  t.match(await decide(s, '/Device/d1', outside), /^FORBIDDEN/, 'direct read refused');
  t.equal(await decide(s, '/Observation?_id=O', outside), 'ok', 'the Observation search alone is fine');
  t.match(await decide(s, '/Observation?_id=O&_include=Observation:device:Device', outside), /^FORBIDDEN: the request reaches Device$/);
  t.match(
    await decide(s, '/Observation?_id=O&_include=Observation:device', outside),
    /^FORBIDDEN: the request reaches every resource type/,
  );
  t.match(await decide(s, '/?_type=Device,Patient', outside), /^FORBIDDEN/);
  t.match(await decide(s, '/?_id=d1', outside), /^FORBIDDEN/, 'system search without _type');
  t.match(await decide(s, '/_history', outside), /^FORBIDDEN/);
  t.match(await decide(s, '/Patient?_has:Device:patient:status=active', outside), /^FORBIDDEN/, '_has');
  t.match(await decide(s, '/Observation?device:Device.status=active', outside), /^FORBIDDEN/, 'chain');
  t.match(await decide(s, '/Patient/1/$everything', outside), /^FORBIDDEN/, 'operation returning any type');
  t.equal(await decide(s, '/Observation?_id=O&_include=Observation:device:Device', { scope: ALL }), 'ok', 'from the LAN');

  const plain = { scope: ALL, secure: false };
  t.match(await decide(s, '/DiagnosticReport/r1', plain), /^INSECURE_TRANSPORT/, 'direct read refused');
  t.match(
    await decide(s, '/Patient?_id=A&_revinclude=DiagnosticReport:subject', plain),
    /^INSECURE_TRANSPORT: the request reaches DiagnosticReport/,
  );
  t.equal(await decide(s, '/Patient?_id=A&_revinclude=DiagnosticReport:subject', { scope: ALL }), 'ok');
});

t.test('conditional criteria are held to the search rules (issue 12, hole 2)', async (t) => {
  const s = settings(LAN_DEVICES);
  const create = { scope: ALL, ip: '192.0.2.7', method: 'POST' };
  t.match(await decide(s, '/Observation', { ...create, headers: { 'if-none-exist': 'device:Device.status=x' } }), /^FORBIDDEN/);
  t.equal(await decide(s, '/Observation', { ...create, headers: { 'if-none-exist': 'identifier=x' } }), 'ok');
  t.match(await decide(s, '/Observation?device:Device.status=x', { ...create, method: 'PUT' }), /^FORBIDDEN/);
  t.match(await decide(s, '/Observation?device:Device.status=x', { ...create, method: 'DELETE' }), /^FORBIDDEN/);
  t.match(await decide(s, '/Observation?_has:Device:patient:x=y', { ...create, method: 'PATCH' }), /^FORBIDDEN/);
});

t.test('SMART: each reached type needs a grant to see it', async (t) => {
  const s = settings({ defaultRule: { require: { https: false, smart: true } } });
  const inc = '/Observation?_include=Observation:subject:Patient';
  t.match(
    await decide(s, inc, { scope: 'user/Observation.rs' }),
    /^INSUFFICIENT_SCOPE: the request reaches Patient; requires user\/Patient.s$/,
  );
  t.equal(await decide(s, inc, { scope: 'user/Observation.rs user/Patient.r' }), 'ok');
  t.equal(await decide(s, inc, { scope: 'user/Observation.s system/Patient.s' }), 'ok');
  t.match(await decide(s, inc, { scope: 'user/Observation.rs user/Patient.cud' }), /^INSUFFICIENT_SCOPE/, 'no r or s on Patient');
  t.match(await decide(s, inc, { scope: 'user/Observation.rs patient/Patient.rs' }), /^INSUFFICIENT_SCOPE/, 'patient scope does not count');
  t.match(
    await decide(s, inc, { scope: 'user/Observation.rs user/Patient.rs?name=x' }),
    /^INSUFFICIENT_SCOPE/,
    'restricted does not count',
  );
  const any = '/Observation?_include=Observation:subject';
  t.match(await decide(s, any, { scope: 'user/Observation.rs user/Patient.rs' }), /requires user\/\*\.s$/);
  t.equal(await decide(s, any, { scope: 'user/Observation.s user/*.r' }), 'ok');
  t.match(await decide(s, any, { scope: 'user/*.r' }), /^INSUFFICIENT_SCOPE: requires user\/Observation\.s$/, 'still needs its own s');
  // A patient-scoped or restricted grant cannot be held to the reached type before the answer is read.
  const p = { scope: 'patient/*.rs', patient: '123' };
  t.equal(await decide(s, '/Observation?patient=123', p), 'ok');
  t.match(
    await decide(s, '/Observation?patient=123&_include=Observation:performer:Practitioner', p),
    /reaches Practitioner; a patient-scoped token/,
  );
  t.match(
    await decide(s, '/Observation?patient=123&_revinclude:iterate=Provenance:target', p),
    /reaches Provenance; a patient-scoped token/,
  );
  const lab = { scope: 'user/Observation.rs?category=laboratory user/*.rs?category=laboratory' };
  t.equal(await decide(s, '/Observation?category=laboratory', lab), 'ok');
  t.match(await decide(s, '/Observation?category=laboratory&_revinclude=Provenance:target', lab), /requires user\/Provenance.s/);
  t.match(await decide(s, '/Observation?category=laboratory&_include=Observation:subject', lab), /requires user\/\*.s/);
  // Including the launch patient, by the parameter that pins the search, is within the compartment.
  const app = { scope: 'patient/Observation.rs patient/Patient.r', patient: '123' };
  t.equal(await decide(s, '/Observation?patient=123&_include=Observation:patient:Patient', app), 'ok');
  t.equal(await decide(s, '/Observation?subject=Patient/123&_include=Observation:subject:Patient', app), 'ok');
  t.equal(await decide(s, '/Patient/123/Observation?_include=Observation:subject:Patient', app), 'ok', 'compartment search');
  t.equal(await decide(s, '/Patient/123/Observation?_include=Observation:patient:Patient', app), 'ok');
  for (const q of [
    '/Observation?patient=123&_include=Observation:subject:Patient',
    '/Observation?subject=Patient/123&_include=Observation:patient:Patient',
    '/Observation?patient=123&_include=Observation:patient',
    '/Account?patient=123&_include=Account:patient:Patient',
    '/Account?subject=Patient/123&_include=Account:subject:Patient',
    '/Provenance?patient=123&_include=Provenance:patient:Patient',
    '/Observation?patient=123&_include:iterate=Observation:patient:Patient',
    '/Observation?patient=123&_include=Observation:patient:Patient&_include=Observation:performer:Practitioner',
    '/Observation?patient=123&_include=Observation:patient:Patient&subject:Patient.name=x',
    '/Observation?patient=456&_include=Observation:patient:Patient',
    '/Patient/456/Observation?_include=Observation:patient:Patient',
  ]) {
    t.match(await decide(s, q, app), /^INSUFFICIENT_SCOPE: .*(patient-scoped|requires patient\/)/, q);
  }
  t.match(
    await decide(s, '/Observation?patient=123&_include=Observation:patient:Patient', { ...app, scope: 'patient/Observation.rs' }),
    /patient-scoped/,
    'no Patient grant',
  );
  // Conditional create: the criteria's chain reaches Patient.
  const post = { method: 'POST', headers: { 'if-none-exist': 'subject:Patient.name=Bob' } };
  t.match(await decide(s, '/Observation', { ...post, scope: 'user/Observation.cs' }), /reaches Patient; requires user\/Patient.s/);
  t.equal(await decide(s, '/Observation', { ...post, scope: 'user/Observation.cs user/Patient.s' }), 'ok');
  // POST _search hides its parameters in the body.
  t.match(await decide(s, '/Observation/_search', { method: 'POST', scope: 'user/Observation.rs' }), /POST _search/);
  t.equal(await decide(s, '/Observation/_search', { method: 'POST', scope: 'user/*.rs' }), 'ok');
  // Harmless result parameters reach nothing.
  t.equal(await decide(s, '/Observation?_count=5&_sort=-date&_elements=code&_summary=true', { scope: 'user/Observation.s' }), 'ok');
});

t.test('operations: the policy declares what they return', async (t) => {
  const s = settings({
    defaultRule: { require: { https: false, smart: false, auth: false } },
    rules: [{ name: 'devices-from-lan', match: { resourceTypes: ['Device'] }, require: { ipAllow: ['10.0.0.0/8'] } }],
    operations: { 'lab-summary': { types: ['Observation'] }, 'device-report': { types: ['Device'] }, everything: 'own' },
  });
  const outside = { ip: '192.0.2.7' };
  t.equal(await decide(s, '/Patient/1/$lab-summary', outside), 'ok');
  t.match(await decide(s, '/Patient/1/$device-report', outside), /^FORBIDDEN: the request reaches Device/);
  t.match(await decide(s, '/Patient/1/$unknown-op', outside), /^FORBIDDEN: the request reaches every resource type \(\$unknown-op\)/);
  t.equal(await decide(s, '/Patient/1/$everything', outside), 'ok', 'declared own by the operator');
  t.match(await decide(s, '/$graphql?query=x', outside), /^FORBIDDEN/);
});

t.test('a reached rule that needs a token, or named scopes', async (t) => {
  const s = settings({
    defaultRule: { require: { https: false, auth: false, smart: false } },
    rules: [{ name: 'devices', match: { resourceTypes: ['Device'] }, require: { auth: true, scopes: ['devices.read'] } }],
  });
  t.equal(await decide(s, '/Observation?_include=Observation:device:Device&_count=1'), 'TOKEN_MISSING: the request reaches Device');
  t.match(await decide(s, '/Observation?_include=Observation:device:Device', { scope: 'other' }), /reaches Device; requires devices.read/);
  t.equal(await decide(s, '/Observation?_include=Observation:device:Device', { scope: 'devices.read' }), 'ok');
});

t.test("an unbounded reach gets every type's rule, and the exchange the smallest limits", async (t) => {
  const s = settings({
    defaultRule: { require: { https: false, smart: false, auth: false } },
    rules: [
      {
        name: 'media-small',
        match: { resourceTypes: ['Media'], interactions: ['search'] },
        inflate: { maxBytesPerResponse: 1000 },
        limits: { maxRequestBytes: 50 },
      },
      { name: 'writes', match: { interactions: ['create'] }, require: { ipAllow: ['10.0.0.0/8'] } },
    ],
  });
  const i = classifyRequest({ method: 'GET', url: '/Observation?_include=*', basePath: '' });
  const reached = s.policy.reachedRules(s.policy.reachOf(i));
  t.same(reached.map((r) => r.rule.name).sort(), ['defaultRule', 'media-small'], 'read rules only: a create rule is not reached');
  const rule = s.policy.strictest(s.policy.ruleFor(i), reached);
  t.equal(rule.name, 'defaultRule');
  t.equal(rule.inflate.maxBytesPerResponse, 1000);
  t.equal(rule.limits.maxRequestBytes, 50);
  t.equal(s.policy.strictest(s.policy.ruleFor(i), []), s.policy.ruleFor(i), 'nothing reached: the rule itself');
  t.equal(await decide(s, '/Observation?_include=*', { ip: '192.0.2.7' }), 'ok', 'the create rule does not apply to reading');
});
