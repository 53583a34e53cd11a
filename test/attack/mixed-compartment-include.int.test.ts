// FINDING (high, sixth outside check of issue 12): a mixed token (unrestricted user/ scope on the searched type + patient/Patient.r) on a
// compartment search of its launch patient, including the Patient the pin element names.
// security/reach.ts lets Patient through (includesOnlyLaunchPatient: compartment search, pin param
// subject, target named, single-valued). But a compartment search is an OR over every compartment
// element of the type (Observation.subject OR .performer): an Observation whose performer is the
// launch patient and whose subject is another patient is in the result, and the include follows its
// subject. The answer guard holds only pure patient apps (restsOnPatientScope is false when a user/
// scope sees the searched type), so the other patient's Patient comes back.
import t from 'tap';
import { direct as directly } from './helpers.js';
import { stack } from '../helpers/binary-stack.js';
import { mintToken } from '../helpers/auth.js';
import { startShim } from '../helpers/compartment-shim.js';

t.test('Patient/{me}/Observation?_include=Observation:subject:Patient with a mixed token', async (t) => {
  const s = await stack(t, {}, (up) => startShim(t, up.url)); // HAPI-like compartment searches (subject OR performer)
  const { gw, key } = s;
  const direct = (r: Record<string, unknown>) => directly(s, r);
  const me = await direct({ resourceType: 'Patient', name: [{ family: 'Parent' }] });
  const other = await direct({ resourceType: 'Patient', name: [{ family: 'SECRET-CHILD-NAME' }], birthDate: '2015-02-03' });
  // A parent reporting an observation about the child: performer = the parent (launch patient), subject = the child.
  await direct({
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'reported' },
    subject: { reference: `Patient/${other}` },
    performer: [{ reference: `Patient/${me}` }],
  });
  const as = async (scope: string) => ({
    authorization: `Bearer ${await mintToken(key, { claims: { scope, patient: me } })}`,
  });
  const get = async (h: Record<string, string>, path: string) => {
    const r = await fetch(`${gw.base}${path}`, { headers: h });
    return { status: r.status, body: await r.text() };
  };
  const h = await as('user/Observation.rs patient/Patient.r');
  // Controls: this token cannot read the other Patient, nor include Patient on an ordinary search.
  t.equal((await get(h, `/Patient/${other}`)).status, 403, 'control: Patient/{other} directly is refused');
  t.equal((await get(h, `/Observation?_include=Observation:subject:Patient`)).status, 403, 'control: unpinned include refused');
  t.equal(
    (await get(h, `/Observation?performer=Patient/${me}&_include=Observation:subject:Patient`)).status,
    403,
    'control: include pinned by performer refused',
  );
  // Pure patient app: the guard drops the other Patient.
  const pure = await get(
    await as('patient/Observation.rs patient/Patient.r'),
    `/Patient/${me}/Observation?_include=Observation:subject:Patient`,
  );
  t.equal(pure.status, 200, 'pure patient app: 200');
  t.notOk(pure.body.includes('SECRET-CHILD-NAME'), 'pure patient app: the other Patient is dropped');

  const r = await get(h, `/Patient/${me}/Observation?_include=Observation:subject:Patient`);
  t.comment(`mixed token: ${r.status} ${r.body.slice(0, 600)}`);
  t.notOk(
    r.status === 200 && r.body.includes('SECRET-CHILD-NAME'),
    `mixed token: another patient's Patient must not come back (got ${r.status}, other's name present: ${r.body.includes('SECRET-CHILD-NAME')})`,
  );
});
