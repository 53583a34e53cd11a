// Paging (issue 12): HAPI's next links are `[base]?_getpages={id}&…`, a system-level request the
// gateway cannot tie to the search it continues. Refusing it (it may carry any type) left patient
// apps and typed user/ scopes unable to page; now it is answered with only the types the caller
// may read, each judged as a direct search of it would be (its rules, a SMART grant to see it, a
// patient app's compartment), and refused to a caller who may read none.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { startEverythingShim } from '../helpers/everything-upstream.js';
import { direct, outcome } from './helpers.js';

type Page = { entry?: { resource: { resourceType: string; id: string } }[]; link?: { relation: string; url: string }[] };

t.test('a page of an earlier search carries only what the caller may read', async (t) => {
  const s = await stack(
    t,
    // The test client is 127.0.0.1: outside this range, as a client off the device network would be.
    { rules: [{ name: 'devices-from-device-lan', match: { resourceTypes: ['Device'] }, require: { ipAllow: ['10.20.0.0/16'] } }] },
    (up) => startEverythingShim(t, up),
  );
  const { gw, as, upstream } = s;
  const me = await direct(s, { resourceType: 'Patient', name: [{ family: 'Me' }] });
  const other = await direct(s, { resourceType: 'Patient', name: [{ family: 'Other' }] });
  const obs = (subject: string) =>
    direct(s, { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${subject}` } });
  const mine = await obs(me);
  const theirs = await obs(other);
  const device = await direct(s, { resourceType: 'Device', status: 'active' });
  const path = '?_getpages=7f3a&_getpagesoffset=20&_count=20&_pretty=true&_bundletype=searchset';

  const page = async (headers: Record<string, string>, p = path) => {
    const r = await fetch(`${gw.base}${p}`, { headers });
    const text = await r.text();
    t.equal(r.status, 200, text.slice(0, 300));
    const body = JSON.parse(text) as Page;
    return {
      text,
      body,
      ids: (body.entry ?? [])
        .filter((e) => e.resource.resourceType !== 'OperationOutcome')
        .map((e) => `${e.resource.resourceType}/${e.resource.id}`)
        .sort(),
    };
  };
  // Control: the upstream's page carries both patients, their Observations and the Device.
  const raw = (await (await fetch(`${upstream}${path}`)).json()) as Page;
  t.equal(raw.entry?.length, 5, 'the upstream page carries every type');

  const app = await page(await as('patient/Patient.rs patient/Observation.rs', me));
  t.same(app.ids, [`Observation/${mine}`, `Patient/${me}`].sort(), 'a patient app: its compartment only');
  t.match(app.text, /ENTRIES_WITHHELD/);
  t.notMatch(app.text, new RegExp(`${other}|${theirs}|${device}`));
  const next = app.body.link?.find((l) => l.relation === 'next')?.url ?? '';
  t.match(next, /^http:\/\/gateway\.test\/fhir\?_getpages=7f3a&/, 'the next link is the gateway’s');

  const typed = await page(await as('user/Observation.rs'));
  t.same(typed.ids, [`Observation/${mine}`, `Observation/${theirs}`].sort(), 'user/Observation.rs: Observations only');
  t.match(typed.text, /3 entries were withheld/);
  const all = await page(await as('user/*.rs'));
  t.same(
    all.ids,
    [`Observation/${mine}`, `Observation/${theirs}`, `Patient/${me}`, `Patient/${other}`].sort(),
    'user/*.rs: every type but the Device',
  );
  t.match(all.text, /1 entry was withheld/, "the Device's rule refuses this client, as a direct read would");
  t.same(
    await outcome(fetch(`${gw.base}/Device/${device}`, { headers: await as('user/*.rs') })),
    [403, 'FORBIDDEN'],
    'control: a direct read',
  );

  // Refused: a caller who may read nothing, no token, and a page request carrying search parameters.
  t.same(await outcome(fetch(`${gw.base}${path}`, { headers: await as('user/Observation.c') })), [403, 'INSUFFICIENT_SCOPE'], 'no read');
  t.same(
    await outcome(fetch(`${gw.base}${path}`, { headers: await as('user/Observation.rs?category=laboratory') })),
    [403, 'INSUFFICIENT_SCOPE'],
    'a restricted scope, whose condition a page cannot be held to',
  );
  t.same((await outcome(fetch(`${gw.base}${path}`)))[0], 401, 'no token');
  for (const extra of ['&_include=*', '&_type=Device', '&name=Me', '&_getpages=other']) {
    t.same(
      await outcome(fetch(`${gw.base}${path}${extra}`, { headers: await as('user/Observation.rs') })),
      [403, 'INSUFFICIENT_SCOPE'],
      `${extra}: an ordinary system-level search`,
    );
  }
  t.same(
    await outcome(fetch(`${gw.base}${path}`, { headers: await as('patient/Observation.rs') })),
    [403, 'INSUFFICIENT_SCOPE'],
    'a patient scope without a launch patient',
  );
});
