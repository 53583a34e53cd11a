// FINDING (low, sixth outside check of issue 12): conditional references in operation bodies. The operation-body route (upstream/pass-through.ts
// operationBody) runs an Externalizer as a content check, which collects `reference` values with a
// query, but nobody authorizes them: `Observation/$validate` (built-in `own`) carrying
// `"subject": {"reference": "Patient?birthdate=…"}` reaches the upstream with no Patient search
// grant. A plain create of the same resource is refused (403). Whether the upstream resolves the
// match URL depends on the operation (HAPI's $validate does not; an operator-declared `own`
// operation that stores may): this test only pins that the gateway forwards it unjudged.
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { startShim } from '../helpers/compartment-shim.js';
import { outcome } from './helpers.js';

t.test('$validate body with a conditional reference is not held to the Patient search rules', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const log: string[] = [];
  const shim = await startShim(t, up.url, log);
  const gw = await startTestGateway(t, { upstream: shim, jwksUri: jwks.url });
  const h = {
    authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/Observation.cruds' } })}`,
    'content-type': 'application/fhir+json',
  };
  const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient?birthdate=1970-01-01' } };
  t.same(
    await outcome(fetch(`${gw.base}/Observation`, { method: 'POST', headers: h, body: JSON.stringify(obs) })),
    [403, 'INSUFFICIENT_SCOPE'],
    'control: plain create refused',
  );
  const v = await outcome(fetch(`${gw.base}/Observation/$validate`, { method: 'POST', headers: h, body: JSON.stringify(obs) }));
  const forwarded = log.some((l) => l.includes('$validate'));
  t.comment(`$validate: ${v.join(' ')}; reached upstream: ${forwarded}`);
  t.same(v, [403, 'INSUFFICIENT_SCOPE'], 'the conditional reference in an operation body is authorized as a search');
  t.notOk(forwarded, 'not forwarded');
});
