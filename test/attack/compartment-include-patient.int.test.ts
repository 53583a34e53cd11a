// FINDING (high, fifth outside check of issue 12): a compartment search of the launch patient `Patient/{me}/Type?…` lets ANY reach of
// Patient through (security/reach.ts inLaunchCompartment: no check of what the request includes or
// chains, nor of a Patient scope). The answer is held to the compartment only for a pure patient app;
// a token with a user/ scope on the searched type (and only a `patient` launch claim, even without any
// Patient scope) gets every Patient the include reaches: other patients' demographics.
// Fixed: the compartment exempts Patient only when nothing else reaches it (fhir/reach.ts compartmentOnly).
import t from 'tap';
import { direct as directly } from './helpers.js';
import { stack } from '../helpers/binary-stack.js';
import { mintToken } from '../helpers/auth.js';
import { startShim } from '../helpers/compartment-shim.js';

t.test('Patient/{me}/Appointment?_include=Appointment:actor:Patient does not return other patients', async (t) => {
  const s = await stack(t, {}, (up) => startShim(t, up.url)); // HAPI-like compartment searches
  const { gw, key } = s;
  const direct = (r: Record<string, unknown>) => directly(s, r);
  const me = await direct({ resourceType: 'Patient', name: [{ family: 'Me' }] });
  const other = await direct({ resourceType: 'Patient', name: [{ family: 'SECRET-OTHER-NAME' }], birthDate: '1970-01-01' });
  await direct({
    resourceType: 'Appointment',
    status: 'booked',
    participant: [
      { actor: { reference: `Patient/${me}` }, status: 'accepted' },
      { actor: { reference: `Patient/${other}` }, status: 'accepted' },
    ],
  });
  await direct({
    resourceType: 'Group',
    type: 'person',
    actual: true,
    member: [{ entity: { reference: `Patient/${me}` } }, { entity: { reference: `Patient/${other}` } }],
  });
  const as = async (scope: string, patient?: string) => ({
    authorization: `Bearer ${await mintToken(key, { claims: { scope, ...(patient ? { patient } : {}) } })}`,
  });
  const get = async (h: Record<string, string>, path: string) => {
    const r = await fetch(`${gw.base}${path}`, { headers: h });
    return { status: r.status, body: await r.text() };
  };

  for (const scope of ['user/Appointment.rs', 'user/Appointment.rs patient/Patient.r']) {
    const h = await as(scope, me);
    // Controls: the same token cannot read the other patient, nor include Patients on an ordinary search.
    t.equal((await get(h, `/Patient/${other}`)).status, 403, `${scope}: Patient/{other} directly is refused`);
    t.equal(
      (await get(h, `/Appointment?_include=Appointment:actor:Patient`)).status,
      403,
      `${scope}: an ordinary search including Patient is refused`,
    );
    const r = await get(h, `/Patient/${me}/Appointment?_include=Appointment:actor:Patient`);
    t.notMatch(
      r.body,
      /SECRET-OTHER-NAME/,
      `${scope}: the compartment search's include does not carry the other patient (got ${r.status})`,
    );
    const chain = await get(h, `/Patient/${me}/Appointment?actor:Patient.name=SECRET-OTHER`);
    t.equal(chain.status, 403, `${scope}: a chain into Patient is refused like on an ordinary search`);
  }
  const h = await as('user/Group.rs', me);
  const g = await get(h, `/Patient/${me}/Group?_include=Group:member:Patient`);
  t.notMatch(g.body, /SECRET-OTHER-NAME/, `user/Group.rs: every member of every group of the patient is not served (got ${g.status})`);
  // A pure patient app is held to its compartment on the way out, but a chain into Patient on its
  // compartment search is still let through: an oracle on co-participants' Patient data (total 1 vs 0).
  const app = await as('patient/Appointment.rs', me);
  const oracle = await get(app, `/Patient/${me}/Appointment?actor:Patient.name=SECRET-OTHER`);
  t.equal(
    oracle.status,
    403,
    `patient app: a chain into Patient on its compartment search is refused (got ${oracle.status}, ${/"total":\d+/.exec(oracle.body)?.[0]})`,
  );
  // Without a launch claim the very same request is refused: the claim alone opens it.
  t.equal((await get(await as('user/Group.rs'), `/Patient/${me}/Group?_include=Group:member:Patient`)).status, 403);
});
