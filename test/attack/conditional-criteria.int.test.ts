// FINDING (issue 12 hole 2): conditional criteria are searches. `POST /Observation` with
// `If-None-Exist: subject:Patient.name=Bob` answered 200 or 201 depending on Patient data the
// token could not search; the same through a batch entry's `ifNoneExist` and the conditional
// update/delete URLs. The criteria are now held to the search rules of every type they reach.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle, direct, outcome } from './helpers.js';

const OBS = { resourceType: 'Observation', status: 'final', code: { text: 'criteria probe' } };

t.test('conditional criteria reaching other types need a grant on them', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  await direct(s, { resourceType: 'Patient', name: [{ family: 'Bob' }] });
  const obsOnly = { ...(await s.as('user/Observation.cruds fhir.write')), 'content-type': 'application/fhir+json' };
  const count = async () =>
    ((await (await fetch(`${s.up.url}/Observation?code:text=criteria%20probe&_summary=count`)).json()) as { total: number }).total;

  const post = (headers: Record<string, string>) =>
    fetch(`${s.gw.base}/Observation`, { method: 'POST', headers, body: JSON.stringify(OBS) });
  t.same(await outcome(post({ ...obsOnly, 'if-none-exist': 'subject:Patient.name=Bob' })), [403, 'INSUFFICIENT_SCOPE'], 'header');
  t.same(
    await outcome(post({ ...obsOnly, 'if-none-exist': 'Observation?subject.name=Bob' })),
    [403, 'INSUFFICIENT_SCOPE'],
    'untyped chain',
  );
  t.same(await outcome(post({ ...obsOnly, 'if-none-exist': '_has:Provenance:target:agent=x' })), [403, 'INSUFFICIENT_SCOPE'], '_has');

  const entry = (ifNoneExist: string) => ({ resource: OBS, request: { method: 'POST', url: 'Observation', ifNoneExist } });
  const r = await bundle(s, obsOnly, [entry('identifier=x'), entry('subject:Patient.name=Bob')]);
  const text = await r.text();
  t.equal(r.status, 403, 'batch entry field');
  t.match(text, /Bundle entry 1: /, 'names the entry');
  t.match(text, /reaches Patient/);

  t.same(
    await outcome(
      fetch(`${s.gw.base}/Observation?subject:Patient.name=Bob`, { method: 'PUT', headers: obsOnly, body: JSON.stringify(OBS) }),
    ),
    [403, 'INSUFFICIENT_SCOPE'],
    'conditional update URL',
  );
  t.same(
    await outcome(fetch(`${s.gw.base}/Observation?subject:Patient.name=Bob`, { method: 'DELETE', headers: obsOnly })),
    [403, 'INSUFFICIENT_SCOPE'],
    'conditional delete URL',
  );
  const del = { request: { method: 'DELETE', url: 'Observation?subject:Patient.name=Bob' } };
  t.equal((await bundle(s, obsOnly, [del])).status, 403, 'conditional delete entry');
  // A conditional reference inside a transaction is a search the server runs to resolve it.
  const withRef = (reference: string) => ({
    resource: { ...OBS, subject: { reference } },
    request: { method: 'POST', url: 'Observation' },
  });
  const tx = await bundle(s, obsOnly, [withRef('Patient?name=Bob')], 'transaction');
  const txText = await tx.text();
  t.equal(tx.status, 403, 'conditional reference');
  t.match(txText, /Bundle entry 0: .*requires user\/Patient\.s/, 'names the entry and the search it needs');
  const nested = await bundle(
    s,
    obsOnly,
    [{ resource: { ...OBS, performer: [{ reference: 'Patient?name=Bob' }] }, request: { method: 'POST', url: 'Observation' } }],
    'transaction',
  );
  t.equal(nested.status, 403, 'wherever it sits in the resource');
  await nested.arrayBuffer();
  const chained = await bundle(
    s,
    { ...(await s.as('user/Observation.cruds user/Patient.s fhir.write')), 'content-type': 'application/fhir+json' },
    [withRef('Patient?organization:Organization.name=x')],
    'transaction',
  );
  t.match(await chained.text(), /reaches Organization/, 'and held to what its criteria reach');
  t.equal(await count(), 0, 'nothing was created');

  // With a grant on Patient the criteria run: the first create makes one, the second finds it.
  const both = { ...(await s.as('user/Observation.cruds user/Patient.s fhir.write')), 'content-type': 'application/fhir+json' };
  const criteria = 'code:text=criteria%20probe';
  t.equal((await post({ ...both, 'if-none-exist': criteria })).status, 201);
  t.equal((await post({ ...both, 'if-none-exist': criteria })).status, 200, 'the criteria matched: the answer depends on the search');
  t.equal(await count(), 1);
  t.equal((await post({ ...both, 'if-none-exist': 'subject:Patient.name=Bob' })).status, 201, 'a granted chain runs');
});
