// FINDING (medium, fourth outside check of issue 12): a patient app's answers are held to its
// compartment by the references each entry carries; a resource outside any compartment is sent
// when it names no other patient. `_elements` and `_summary=text|true` have the upstream leave
// those references out (HAPI applies them to pages too, and repeats them in its next links), so
// another patient's Device or GuidanceResponse passed. A patient-scoped listing may not use them.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { startEverythingShim } from '../helpers/everything-upstream.js';
import { direct } from './helpers.js';

t.test('a patient-scoped listing may not have the upstream leave out what ties entries to the patient', async (t) => {
  const s = await stack(t, {}, (up) => startEverythingShim(t, up));
  const { gw, as } = s;
  const me = await direct(s, { resourceType: 'Patient', name: [{ family: 'Me' }] });
  const app = await as('patient/*.rs', me);
  const status = async (path: string, headers: Record<string, string>) => {
    const r = await fetch(`${gw.base}${path}`, { headers });
    const text = await r.text();
    return { status: r.status, text };
  };
  for (const q of [
    '?_getpages=p1&_elements=deviceName,note',
    '?_getpages=p1&_summary=text',
    '?_getpages=p1&_summary=true',
    `/Observation?patient=${me}&_elements=code`,
    `/Observation?patient=${me}&_ELEMENTS=code`,
    `/Observation?patient=${me}&_summary=TEXT`,
    `/Patient/${me}/$everything?_elements=name`,
  ]) {
    const r = await status(q, app);
    t.equal(r.status, 403, q);
    t.match(r.text, /cannot use _(elements|summary)/, `${q}: says why`);
    t.notMatch(r.text, /user\//, 'in the app’s own terms');
  }
  for (const q of ['?_getpages=p1&_summary=count', '?_getpages=p1&_summary=data', `/Observation?patient=${me}&_summary=false`]) {
    t.equal((await status(q, app)).status, 200, `${q}: keeps every reference`);
  }
  // Not a patient app: the type guard cannot be blinded by elements (the type is always there).
  t.equal((await status('?_getpages=p1&_elements=status', await as('user/*.rs'))).status, 200, 'a user token’s page with _elements');
});
