// Binary.securityContext through the running gateway, against Medplum's FHIR router: reading or
// writing a Binary needs read access to the resource its securityContext names.
import t from 'tap';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';

/** Creates directly in the upstream (around the gateway): the fixtures of each case. */
async function direct(s: Stack, resource: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${s.up.url}/${resource.resourceType as string}`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  return ((await r.json()) as { id: string }).id;
}
async function binary(s: Stack, securityContext?: string): Promise<string> {
  const r = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: {
      ...(await s.as('user/*.cruds')),
      'content-type': 'application/pdf',
      ...(securityContext ? { 'x-security-context': securityContext } : {}),
    },
    body: PDF(2000),
  });
  await r.arrayBuffer();
  return (r.headers.get('location') ?? '').split('/')[5];
}
const status = async (p: Promise<Response>) => {
  const r = await p;
  await r.arrayBuffer();
  return r.status;
};

t.test('user scopes: reading a Binary needs read access to its securityContext too', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const governed = await binary(s, `Patient/${pid}`);
  const free = await binary(s);
  const binaryOnly = await s.as('user/Binary.r');
  t.equal(
    await status(fetch(`${s.gw.base}/Binary/${governed}`, { headers: binaryOnly })),
    403,
    'Binary.r alone does not reach a Binary governed by a Patient',
  );
  const refused = await fetch(`${s.gw.base}/Binary/${governed}`, { headers: { ...binaryOnly, accept: 'application/fhir+json' } });
  t.match(
    await refused.json(),
    { issue: [{ details: { coding: [{ code: 'INSUFFICIENT_SCOPE' }] } }] },
    'the FHIR view too, as an OperationOutcome',
  );
  t.equal(
    await status(fetch(`${s.gw.base}/Binary/${governed}/$binary-access-read?path=Binary.data`, { headers: binaryOnly })),
    403,
    'and $binary-access-read',
  );
  t.equal(
    await status(fetch(`${s.gw.base}/Binary/${free}`, { headers: binaryOnly })),
    200,
    'a Binary without securityContext needs only Binary.r',
  );
  t.equal(
    await status(fetch(`${s.gw.base}/Binary/${governed}`, { headers: await s.as('user/Binary.r user/Patient.r') })),
    200,
    'with Patient.r as well',
  );
});

t.test('patient scopes: only Binaries whose securityContext is in the patient compartment; the upstream is asked', async (t) => {
  const s = await stack(t);
  const me = await direct(s, { resourceType: 'Patient' });
  const other = await direct(s, { resourceType: 'Patient' });
  const myDoc = await direct(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    subject: { reference: `Patient/${me}` },
    content: [{ attachment: { contentType: 'application/pdf' } }],
  });
  const theirDoc = await direct(s, {
    resourceType: 'DocumentReference',
    status: 'current',
    subject: { reference: `Patient/${other}` },
    content: [{ attachment: { contentType: 'application/pdf' } }],
  });
  const token = await s.as('patient/*.rs', me);
  const read = async (id: string) => status(fetch(`${s.gw.base}/Binary/${id}`, { headers: token }));
  t.equal(await read(await binary(s, `Patient/${me}`)), 200, 'governed by my Patient');
  t.equal(await read(await binary(s, `Patient/${other}`)), 403, 'governed by another Patient');
  const searchesBefore = s.up.requests.filter((r) => r.url.startsWith('/fhir/DocumentReference?')).length;
  t.equal(await read(await binary(s, `DocumentReference/${myDoc}`)), 200, 'governed by my DocumentReference');
  t.ok(
    s.up.requests.filter((r) => r.url.startsWith('/fhir/DocumentReference?')).length > searchesBefore,
    'the upstream was asked whether it is in my compartment',
  );
  t.equal(await read(await binary(s, `DocumentReference/${theirDoc}`)), 403, "governed by another patient's DocumentReference");
  t.equal(await read(await binary(s, 'Practitioner/1')), 403, 'governed by a type outside the compartment');
  t.equal(await read(await binary(s)), 403, 'no securityContext: nothing ties it to the patient');
  t.equal(
    await status(fetch(`${s.gw.base}/Binary/${await binary(s, `Patient/${me}`)}/$binary-access-read?path=Binary.data`, { headers: token })),
    200,
    '$binary-access-read likewise',
  );
  t.equal(await status(fetch(`${s.gw.base}/Binary?_id=x`, { headers: token })), 403, 'a Binary search is still refused to a patient scope');
});

t.test('writes: X-Security-Context, a FHIR body’s securityContext, and the context of the version replaced', async (t) => {
  const s = await stack(t);
  const pid = await direct(s, { resourceType: 'Patient' });
  const writerOnly = await s.as('user/Binary.cru');
  const post = (headers: Record<string, string>, body: Buffer, type = 'application/pdf', method = 'POST', path = '/Binary') =>
    fetch(`${s.gw.base}${path}`, { method, headers: { ...headers, 'content-type': type }, body });

  t.equal(
    await status(post({ ...writerOnly, 'x-security-context': `Patient/${pid}` }, PDF(1000))),
    403,
    'raw upload naming a context the writer cannot read',
  );
  const fhirBody = Buffer.from(
    JSON.stringify({
      resourceType: 'Binary',
      contentType: 'application/pdf',
      securityContext: { reference: `Patient/${pid}` },
      data: PDF(50_000).toString('base64'),
    }),
  );
  t.equal(await status(post(writerOnly, fhirBody, 'application/fhir+json')), 403, 'FHIR body naming a context the writer cannot read');
  t.same(s.gw.blobFiles(), [], 'nothing stored for either');
  t.equal(s.up.requests.filter((r) => r.url.startsWith('/fhir/Binary') && r.method === 'POST').length, 0, 'nothing sent upstream');

  const allowed = await s.as('user/Binary.cru user/Patient.r');
  t.equal(await status(post({ ...allowed, 'x-security-context': `Patient/${pid}` }, PDF(1000))), 201, 'with read access to the context');
  t.equal(await status(post(allowed, fhirBody, 'application/fhir+json')), 201, 'FHIR body too');

  const governed = await binary(s, `Patient/${pid}`);
  const files = s.gw.blobFiles().length;
  t.equal(
    await status(post(writerOnly, PDF(1000), 'application/pdf', 'PUT', `/Binary/${governed}`)),
    403,
    'replacing a governed Binary needs access to its context',
  );
  t.equal(
    await status(post(writerOnly, PDF(1000), 'application/pdf', 'POST', `/Binary/${governed}/$binary-access-write?path=Binary.data`)),
    403,
    'so does $binary-access-write',
  );
  t.equal(s.gw.blobFiles().length, files, 'nothing stored');
  t.equal(await status(post(allowed, PDF(1000), 'application/pdf', 'PUT', `/Binary/${governed}`)), 200, 'allowed with access');
});
