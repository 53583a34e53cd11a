// Patient-facing SMART apps (issue 12): with a patient/ scope and a launch patient, reading the
// patient's own resources by id, searches pinned to the patient, and including the patient work;
// another patient's data is never sent, and refusals speak in the app's own terms (never user/).
import t from 'tap';
import { stack, type Stack } from '../helpers/binary-stack.js';
import { startEverythingShim } from '../helpers/everything-upstream.js';
import { BUNDLE_RULE, bundle, direct, outcome } from './helpers.js';

type Searchset = { entry?: { resource: { resourceType: string; id: string } }[] };

/** Two patients in the upstream, each with one Observation. */
async function twoPatients(s: Stack): Promise<{ me: string; other: string; mine: string; theirs: string }> {
  const me = await direct(s, { resourceType: 'Patient', name: [{ family: 'Me' }] });
  const other = await direct(s, { resourceType: 'Patient', name: [{ family: 'Other' }] });
  const obs = (subject: string) =>
    direct(s, { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${subject}` } });
  return { me, other, mine: await obs(me), theirs: await obs(other) };
}

t.test('a patient app reads its patient, and only its patient', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const { me, other, mine, theirs } = await twoPatients(s);
  const app = await s.as('patient/Patient.rs patient/Observation.rs', me);
  const get = (path: string) => fetch(`${s.gw.base}${path}`, { headers: app });

  const read = await get(`/Observation/${mine}`);
  t.equal(read.status, 200, 'its own Observation by id');
  t.equal(((await read.json()) as { id: string }).id, mine);
  const refused = await get(`/Observation/${theirs}`);
  const text = await refused.text();
  t.same([refused.status, JSON.parse(text).issue[0].details.coding[0].code], [403, 'INSUFFICIENT_SCOPE'], "another patient's by id");
  t.notMatch(text, /user\//, 'not told to get a user/ scope');
  t.notMatch(text, new RegExp(other), 'nor whose it is');
  t.same(await outcome(get(`/Observation/does-not-exist`)), [403, 'INSUFFICIENT_SCOPE'], 'a missing id looks the same');
  t.equal((await get(`/Patient/${me}`)).status, 200, 'its Patient');
  t.same(await outcome(get(`/Patient/${other}`)), [403, 'INSUFFICIENT_SCOPE']);

  const types = async (path: string) => {
    const r = await get(path);
    t.equal(r.status, 200, path);
    return ((await r.json()) as Searchset).entry?.map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort();
  };
  t.same(
    await types(`/Observation?patient=${me}&_include=Observation:patient:Patient`),
    [`Observation/${mine}`, `Patient/${me}`].sort(),
    '_include of the patient',
  );
  t.same(
    await types(`/Observation?subject=Patient/${me}&_include=Observation:subject:Patient`),
    [`Observation/${mine}`, `Patient/${me}`].sort(),
  );
  // Compartment searches (Patient/{me}/Observation) are decided the same way: test/security/reach.test.ts (the test upstream has none).

  const unpinned = await get(`/Observation?code:text=x`);
  const unpinnedText = await unpinned.text();
  t.equal(unpinned.status, 403, 'an unpinned search');
  t.match(unpinnedText, /requires patient\/Observation\.s/, 'in its own terms');
  t.match(unpinnedText, /pin a search with patient=/, 'with what to do');
  t.same(await outcome(get(`/Observation?patient=${other}`)), [403, 'INSUFFICIENT_SCOPE'], "another patient's search");
  for (const q of [
    `/Observation?patient=${me}&_include=Observation:subject`,
    `/Observation?patient=${me}&_include=Observation:patient`,
    `/Observation?patient=${me}&_include=Observation:performer:Practitioner`,
    `/Observation?patient=${me}&_revinclude=Provenance:target`,
    `/Observation?patient=${me}&_include=Observation:subject:Patient`,
  ]) {
    const r = await get(q);
    const body = await r.text();
    t.same([r.status, JSON.parse(body).issue[0].details.coding[0].code], [403, 'INSUFFICIENT_SCOPE'], q);
    t.notMatch(body, /user\//, `${q}: no user/ advice`);
  }
  // Found from outside: a multi-valued pin (Account.subject) names other patients too, whom the include returned.
  await direct(s, {
    resourceType: 'Account',
    status: 'active',
    subject: [{ reference: `Patient/${me}` }, { reference: `Patient/${other}` }],
  });
  const accounts = await fetch(`${s.gw.base}/Account?patient=${me}&_include=Account:patient:Patient`, {
    headers: await s.as('patient/Account.rs patient/Patient.rs', me),
  });
  const accountsText = await accounts.text();
  t.equal(accounts.status, 403, 'include through a multi-valued pin');
  t.notMatch(accountsText, new RegExp(other));
  // A patient app's listings inside a batch: each entry's searchset is held to the compartment, as sent alone.
  const listed = await bundle(s, app, [
    { request: { method: 'GET', url: `Observation?patient=${me}` } },
    { request: { method: 'GET', url: `Patient/${me}/_history` } },
  ]);
  const listedText = await listed.text();
  t.equal(listed.status, 200, listedText.slice(0, 300));
  const nested = (JSON.parse(listedText) as { entry: { resource?: Searchset; response: { status: string } }[] }).entry;
  t.same(
    nested.map((e) => e.resource?.entry?.map((x) => `${x.resource.resourceType}/${x.resource.id}`)),
    [[`Observation/${mine}`], [`Patient/${me}`]],
    'its Observations; its Patient history',
  );
  for (const url of [`Observation?patient=${other}`, `Observation?code:text=x`, `Patient/${other}/_history`]) {
    const listing = await bundle(s, app, [{ request: { method: 'GET', url } }]);
    const body = await listing.text();
    t.same([listing.status, JSON.parse(body).issue[0].details.coding[0].code], [403, 'INSUFFICIENT_SCOPE'], `${url} in a batch`);
    t.notMatch(body, /user\//);
  }
  // A read by id cannot be checked inside a Bundle the upstream executes whole.
  const b = await bundle(s, app, [{ request: { method: 'GET', url: `Observation/${mine}` } }]);
  t.equal(b.status, 403, 'patient read by id inside a batch');
  t.match(await b.text(), /inside a Bundle/);
});

t.test("a patient app's $everything: its record, held to its compartment on the way out", async (t) => {
  const s = await stack(t, {}, (up) => startEverythingShim(t, up));
  const upstream = s.upstream;
  const { me, other, mine, theirs } = await twoPatients(s);
  // In my compartment by its subject, and naming the other patient too: the server may bring them along.
  await direct(s, {
    resourceType: 'Account',
    status: 'active',
    subject: [{ reference: `Patient/${me}` }, { reference: `Patient/${other}` }],
  });
  const app = await s.as('patient/*.rs', me);

  const r = await fetch(`${s.gw.base}/Patient/${me}/$everything`, { headers: app });
  const text = await r.text();
  t.equal(r.status, 200, text.slice(0, 300));
  const out = JSON.parse(text) as { entry?: { resource: { resourceType: string; id: string } }[] };
  const ids = (out.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`);
  t.ok(ids.includes(`Patient/${me}`), 'its Patient');
  t.ok(ids.includes(`Observation/${mine}`), 'its Observation');
  t.notOk(ids.includes(`Patient/${other}`), "never the other patient's Patient");
  t.notOk(ids.includes(`Observation/${theirs}`), "nor the other patient's Observation");
  t.match(text, /ENTRIES_WITHHELD/, 'an outcome entry says entries were withheld');
  // Control: the upstream's answer did carry the other patient.
  const raw = (await (await fetch(`${upstream}/Patient/${me}/$everything`)).json()) as {
    entry: { resource: { resourceType: string; id: string } }[];
  };
  t.ok(
    raw.entry.some((e) => e.resource.resourceType === 'Patient' && e.resource.id === other),
    'the upstream sent the other Patient',
  );

  t.same(
    await outcome(fetch(`${s.gw.base}/Patient/${other}/$everything`, { headers: app })),
    [403, 'INSUFFICIENT_SCOPE'],
    "another patient's",
  );
  // Found from outside: a token mixing patient/ with any user/ scope got $everything unguarded.
  const mixed = await s.as('patient/*.rs user/Practitioner.r', me);
  t.same(await outcome(fetch(`${s.gw.base}/Patient/${me}/$everything`, { headers: mixed })), [403, 'INSUFFICIENT_SCOPE'], 'a mixed token');
  const narrow = await s.as('patient/Observation.rs patient/Patient.rs', me);
  t.same(
    await outcome(fetch(`${s.gw.base}/Patient/${me}/$everything`, { headers: narrow })),
    [403, 'INSUFFICIENT_SCOPE'],
    'needs r and s on every type',
  );
});

t.test("a batch's searchsets are held to the patient's compartment even where the upstream ignores the pin", async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] }, (up) => startEverythingShim(t, up, { ignorePatientPin: true }));
  const upstream = s.upstream;
  const { me, mine, theirs } = await twoPatients(s);
  const app = await s.as('patient/Patient.rs patient/Observation.rs', me);
  const r = await bundle(s, app, [{ request: { method: 'GET', url: `Observation?patient=${me}` } }]);
  const text = await r.text();
  t.equal(r.status, 200, text.slice(0, 300));
  const ids = (JSON.parse(text) as { entry: { resource: Searchset }[] }).entry[0].resource.entry?.map((e) => e.resource.id);
  t.ok(ids?.includes(mine), 'its Observation');
  t.notOk(ids?.includes(theirs), "never the other patient's");
  t.match(text, /ENTRIES_WITHHELD/, 'the nested searchset says entries were withheld');
  // Control: the upstream did answer with the other patient's Observation.
  const raw = await fetch(upstream, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Bundle',
      type: 'batch',
      entry: [{ request: { method: 'GET', url: `Observation?patient=${me}` } }],
    }),
  });
  t.match(await raw.text(), new RegExp(theirs), 'the upstream sent it');
});
