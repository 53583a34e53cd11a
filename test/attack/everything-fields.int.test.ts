// FINDING (low-medium, fifth outside check of issue 12): `_fields` is Medplum's spelling of `_elements` (@medplum/core parseSearchRequest:
// `case '_fields': case '_elements': fields = …`). The gateway refuses `_elements` / `_summary=true|text`
// on a patient app's listings (answer-guard.ts requireWholeEntries) because they strip the references
// the compartment guard judges non-compartment resources by, but not `_fields`: on
// `Patient/{me}/$everything?_fields=…` another patient's Device (referenced by the app's own
// Observation) loses its `patient` reference and is served. Fixed: `_fields` is refused with `_elements`.
import t from 'tap';
import { otherPatientsDevice } from './helpers.js';
import { stack } from '../helpers/binary-stack.js';
import { mintToken } from '../helpers/auth.js';
import { startShim } from '../helpers/compartment-shim.js';

t.test('a patient app cannot strip references with _fields', async (t) => {
  const s = await stack(t, {}, (up) => startShim(t, up.url)); // $everything applying _fields as Medplum's parser reads it
  const { gw, key } = s;
  const me = await otherPatientsDevice(s);
  const h = { authorization: `Bearer ${await mintToken(key, { claims: { scope: 'patient/*.rs', patient: me } })}` };
  const get = async (q: string) => {
    const r = await fetch(`${gw.base}/Patient/${me}/$everything${q}`, { headers: h });
    return { status: r.status, body: await r.text() };
  };
  const plain = await get('');
  t.equal(plain.status, 200);
  t.notMatch(plain.body, /SECRET-PUMP/, "control: the other patient's Device is withheld");
  t.equal((await get('?_elements=id,deviceName,code')).status, 403, 'control: _elements is refused');
  const fields = await get('?_fields=id,deviceName,code');
  t.notMatch(fields.body, /SECRET-PUMP/, `_fields is held like _elements (got ${fields.status})`);
});
