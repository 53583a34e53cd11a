// FINDING (medium-high, fifth outside check of issue 12): a conditional (inline match URL) reference in a plain create/update body —
// `"subject": {"reference": "Patient?identifier=…&birthdate=…"}` — is a search the server runs (HAPI
// JPA resolves them outside transactions too: allowInlineMatchUrlReferences, on by default). The
// gateway only scans Bundle entries for them (fhir/bundle-scan.ts), so the same body sent alone is
// forwarded without a Patient search grant: 201 vs 400/412 answers whether a Patient matches, and the
// stored reference names the match. Inside a transaction the same entry is refused (403).
// Fixed: the Externalizer collects them in every resource write (rewrite/externalize.ts) and each is
// authorized as the search it is (security/bundle.ts authorizeConditionalReference); a patch may not set
// one (rewrite/patch-guard.ts). The shim plays HAPI's resolution (test/helpers/compartment-shim.ts).
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { startShim } from '../helpers/compartment-shim.js';

t.test('a plain create with a conditional reference is held to the referenced type like a transaction entry', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const shim = await startShim(t, up.url);
  const gw = await startTestGateway(t, {
    upstream: shim,
    jwksUri: jwks.url,
    config: { rules: [{ name: 'bundles', match: { interactions: ['batch', 'transaction'] }, require: { smart: false } }] },
  });
  await fetch(`${up.url}/Patient`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Patient',
      name: [{ family: 'Secret' }],
      birthDate: '1970-01-01',
      identifier: [{ system: 'mrn', value: 'MRN-1' }],
    }),
  });
  const h = {
    authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/Observation.cru' } })}`,
    'content-type': 'application/fhir+json',
  };
  const obs = (ref: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: ref } });
  t.equal((await fetch(`${gw.base}/Patient?birthdate=1970-01-01`, { headers: h })).status, 403, 'control: the token cannot search Patient');

  const tx = await fetch(gw.base, {
    method: 'POST',
    headers: h,
    body: JSON.stringify({
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ request: { method: 'POST', url: 'Observation' }, resource: obs('Patient?birthdate=1970-01-01') }],
    }),
  });
  t.equal(tx.status, 403, 'control: inside a transaction the conditional reference is refused');

  const hit = await fetch(`${gw.base}/Observation`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify(obs('Patient?identifier=mrn|MRN-1&birthdate=1970-01-01')),
  });
  const miss = await fetch(`${gw.base}/Observation`, {
    method: 'POST',
    headers: h,
    body: JSON.stringify(obs('Patient?identifier=mrn|MRN-1&birthdate=1980-01-01')),
  });
  t.equal(hit.status, 403, `POST alone: refused like the transaction entry (got ${hit.status})`);
  t.equal(miss.status, 403, `POST alone: no oracle on Patient data (got ${miss.status})`);
  const put = await fetch(`${gw.base}/Observation/abc`, {
    method: 'PUT',
    headers: h,
    body: JSON.stringify({ ...obs('Patient?birthdate=1970-01-01'), id: 'abc' }),
  });
  t.equal(put.status, 403, `PUT alone: refused (got ${put.status})`);
});
