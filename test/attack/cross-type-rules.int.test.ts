// FINDING (high, issue 12 hole 1): a per-type rule was checked only against the type named in
// the request line. A Device rule with ipAllow and a DiagnosticReport rule with https were
// bypassed by `_include`, `_revinclude` and system-level `_type` searches, which returned the
// Device / the DiagnosticReport to a client that a direct read of them refuses. Every type a
// request reaches must now pass its own rule (src/fhir/reach.ts, src/security/reach.ts).
import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { stack } from '../helpers/binary-stack.js';
import { direct, outcome } from './helpers.js';

const STRICT = {
  rules: [
    // The test client is 127.0.0.1: outside this range, as a client off the device network would be.
    { name: 'devices-from-device-lan', match: { resourceTypes: ['Device'] }, require: { ipAllow: ['10.20.0.0/16'] } },
    { name: 'reports-over-https', match: { resourceTypes: ['DiagnosticReport'] }, require: { https: true } },
  ],
};

t.test('type rules hold for every type a search can return', async (t) => {
  const s = await stack(t, STRICT);
  const patient = await direct(s, { resourceType: 'Patient', name: [{ family: 'Bob' }] });
  const device = await direct(s, { resourceType: 'Device', status: 'active' });
  const obs = await direct(s, {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    subject: { reference: `Patient/${patient}` },
    device: { reference: `Device/${device}` },
  });
  await direct(s, { resourceType: 'DiagnosticReport', status: 'final', code: { text: 'r' }, subject: { reference: `Patient/${patient}` } });
  const get = (path: string) => fetch(`${s.gw.base}${path}`, { headers: s.auth });

  // Control: a gateway without the type rules, on the same upstream, does return those types, so
  // each refusal below is the rule holding and not an upstream that ignores the parameter.
  const open = await startTestGateway(t, {
    upstream: s.up.url,
    jwksUri: undefined,
    config: { defaultRule: { require: { auth: false, smart: false } } },
  });
  const types = async (path: string) =>
    ((await (await fetch(`${open.base}${path}`)).json()) as { entry?: { resource: { resourceType: string } }[] }).entry
      ?.map((e) => e.resource.resourceType)
      .sort();
  t.same(await types(`/Observation?_id=${obs}&_include=Observation:device`), ['Device', 'Observation']);
  t.same(await types(`/Patient?_id=${patient}&_revinclude=DiagnosticReport:subject`), ['DiagnosticReport', 'Patient']);

  t.same(await outcome(get(`/Device/${device}`)), [403, 'FORBIDDEN'], 'a direct read of the Device is refused');
  t.same(await outcome(get(`/DiagnosticReport?subject=Patient/${patient}`)), [403, 'INSECURE_TRANSPORT'], 'so is a search of reports');
  t.equal((await get(`/Observation?_id=${obs}`)).status, 200, 'the Observation alone is served');

  t.same(await outcome(get(`/Observation?_id=${obs}&_include=Observation:device`)), [403, 'FORBIDDEN'], '_include without a target');
  t.same(await outcome(get(`/Observation?_id=${obs}&_include=Observation:device:Device`)), [403, 'FORBIDDEN'], '_include naming Device');
  t.same(await outcome(get(`/Observation?_id=${obs}&_include:iterate=Observation:device:Device`)), [403, 'FORBIDDEN'], ':iterate');
  t.same(await outcome(get(`/Observation?_id=${obs}&_include=*`)), [403, 'FORBIDDEN'], '*');
  t.same(await outcome(get(`/Patient?_id=${patient}&_revinclude=DiagnosticReport:subject`)), [403, 'INSECURE_TRANSPORT'], '_revinclude');
  t.same(await outcome(get(`/?_type=Device`)), [403, 'FORBIDDEN'], 'system-level _type');
  t.same(await outcome(get(`/?_id=${device}`)), [403, 'FORBIDDEN'], 'system-level search without _type');
  t.same(await outcome(get(`/_history`)), [403, 'FORBIDDEN'], 'system history');
  t.same(await outcome(get(`/Observation?device:Device.status=active`)), [403, 'FORBIDDEN'], 'a chain into Device');
  t.same(await outcome(get(`/Patient?_has:DiagnosticReport:subject:status=final`)), [403, 'INSECURE_TRANSPORT'], '_has');
  t.same(await outcome(get(`/Patient/${patient}/$everything`)), [403, 'FORBIDDEN'], '$everything returns any type');

  const r = await get(`/Observation?_id=${obs}&_include=Observation:device`);
  const text = await r.text();
  t.match(text, /reaches every resource type/, 'the refusal says why');
  t.match(text, /Source:param:Target/, 'and how to narrow the request');
  const served = (await (await get(`/Observation?_id=${obs}&_include=Observation:subject:Patient`)).json()) as {
    entry: { resource: { resourceType: string } }[];
  };
  t.same(
    served.entry.map((e) => e.resource.resourceType).sort(),
    ['Observation', 'Patient'],
    'an _include of a type without a stricter rule is served',
  );
});
