// FINDING (high, fourth outside check of issue 12): a stored Bundle reached any way other than
// directly — an `_include` naming `:Bundle`, a `_revinclude` from Bundle, a page of an earlier
// search — counted as one more type, "Bundle", and its entries (any type, any patient) passed
// scopes and per-type rules. A Bundle reached anyhow now reaches every type, and a page carries
// one only to a caller who may read every type.
import { createServer } from 'node:http';
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { outcome } from './helpers.js';

const DEVICE_RULE = { name: 'devices-from-device-lan', match: { resourceTypes: ['Device'] }, require: { ipAllow: ['10.20.0.0/16'] } };

async function post(base: string, resource: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${base}/${resource.resourceType as string}`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  return ((await r.json()) as { id: string }).id;
}

/** A HAPI-style page (`[base]?_getpages=…`) whose one entry is the stored Bundle; every other request passes through. */
async function bundlePage(t: { teardown(fn: () => unknown): void }, upstream: string, stored: string): Promise<string> {
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const answer = url.searchParams.has('_getpages')
        ? {
            resourceType: 'Bundle',
            type: 'searchset',
            entry: [{ resource: await (await fetch(`${upstream}/Bundle/${stored}`)).json() }],
          }
        : await (await fetch(`${upstream}${url.pathname.replace(/^\/fhir/, '')}${url.search}`)).json();
      const body = JSON.stringify(answer);
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/fhir`;
}

t.test('a stored Bundle reaches every type, however it is reached', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { rules: [DEVICE_RULE] } });
  const as = async (scope: string, patient?: string) => ({
    authorization: `Bearer ${await mintToken(key, { claims: { scope, ...(patient ? { patient } : {}) } })}`,
  });
  const me = await post(up.url, { resourceType: 'Patient', name: [{ family: 'Me' }] });
  const stored = await post(up.url, {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [
      { resource: { resourceType: 'Patient', id: 'x1', name: [{ family: 'SECRETPATIENT' }] } },
      { resource: { resourceType: 'Device', id: 'x2', deviceName: [{ name: 'SECRETDEVICE', type: 'user-friendly-name' }] } },
    ],
  });
  await post(up.url, { resourceType: 'List', status: 'current', mode: 'working', entry: [{ item: { reference: `Bundle/${stored}` } }] });
  const typed = await as('user/Bundle.rs user/List.rs user/Composition.rs');

  // Control: the upstream does include the Bundle, so each refusal below is the gateway's.
  t.match(await (await fetch(`${up.url}/List?_include=List:item:Bundle`)).text(), /SECRETDEVICE/, 'control: the upstream includes it');
  // Refused by the Device rule (this client is outside its range) or for want of a grant of every type: 403 either way.
  t.equal((await outcome(fetch(`${gw.base}/Bundle/${stored}`, { headers: typed })))[0], 403, 'asked for directly');
  // Without the Device rule in the way, the refusal names why: the Bundle reaches every type.
  const plain = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const why = await fetch(`${plain.base}/List?_include=List:item:Bundle`, { headers: typed });
  t.equal(why.status, 403);
  t.match(await why.text(), /reaches every resource type \(a stored Bundle/, 'named as reaching every type');
  for (const path of [
    '/List?_include=List:item:Bundle',
    '/List?_include:iterate=List:item:Bundle',
    '/Composition?_revinclude=Bundle:composition',
    '/?_type=Bundle',
  ]) {
    const r = await fetch(`${gw.base}${path}`, { headers: typed });
    const text = await r.text();
    t.equal(r.status, 403, path);
    t.notMatch(text, /SECRET/);
  }
  // With a grant of every type the include is served — but not past the Device rule, which a direct read of a Device must pass.
  t.same(
    await outcome(fetch(`${gw.base}/List?_include=List:item:Bundle`, { headers: await as('user/*.rs') })),
    [403, 'FORBIDDEN'],
    "user/*.rs from outside the Device rule's range",
  );

  // A page: the stored Bundle only to a caller who may read every type, never to a patient app.
  const paged = await startTestGateway(t, {
    upstream: await bundlePage(t, up.url, stored),
    jwksUri: jwks.url,
    config: { rules: [DEVICE_RULE] },
  });
  for (const [scope, patient] of [['user/Bundle.rs'], ['user/*.rs'], ['patient/*.rs user/Bundle.rs', me], ['patient/*.rs', me]] as const) {
    const r = await fetch(`${paged.base}?_getpages=7f3a&_getpagesoffset=20&_count=20`, { headers: await as(scope, patient) });
    const text = await r.text();
    t.notMatch(text, /SECRETPATIENT|SECRETDEVICE/, `page with ${scope}: nothing of the stored Bundle`);
    if (r.status === 200) t.match(text, /ENTRIES_WITHHELD/, `${scope}: withheld, and said so`);
    else t.equal(r.status, 403, `${scope}: refused`);
  }
  // Control for the page: a caller who may read every type from where it stands gets the Bundle.
  const open = await startTestGateway(t, { upstream: await bundlePage(t, up.url, stored), jwksUri: jwks.url });
  const all = await fetch(`${open.base}?_getpages=7f3a`, { headers: await as('user/*.rs') });
  t.match(await all.text(), /SECRETDEVICE/, 'without the Device rule, user/*.rs gets the stored Bundle');
});
