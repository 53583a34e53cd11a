/**
 * Transport and network bypass classes through the running gateway: plain HTTP where HTTPS is
 * required, TLS termination and versions, spoofed X-Forwarded-* headers, IP allow/deny lists,
 * non-canonical addresses and IPv4-mapped IPv6. Every refusal checks that the upstream saw nothing.
 */
import http, { type OutgoingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { httpsRequest, makeSelfSignedCert } from '../helpers/tls.js';
import { startUpstream } from '../helpers/upstream.js';

const up = await startUpstream(t);
const key = await makeKey('net-k1');
const jwks = await startJwksServer(t, [key]);
const tok = await mintToken(key, { claims: { scope: 'user/*.cruds' }, expiresIn: 3_600 });
const auth = { authorization: `Bearer ${tok}` };
const patientId = await (async () => {
  const res = await fetch(`${up.url}/Patient`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Net' }] }),
  });
  return ((await res.json()) as { id: string }).id;
})();

function gateway(t: Test, config: Record<string, unknown>): Promise<TestGateway> {
  return startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config });
}

interface Result {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** The X-Request-Id of the last answer `request` received. */
let lastRequestId: string | undefined;

/**
 * A plain HTTP request with node:http: unlike fetch it can send a header twice, and it can pick
 * the address it connects to (127.0.0.1 vs ::1).
 */
function request(url: string, headers: OutgoingHttpHeaders = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const all: OutgoingHttpHeaders = { ...auth, ...headers };
    for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
    const req = http.request(url, { headers: all, agent: false }, (res) => {
      lastRequestId = res.headers['x-request-id'] as string | undefined;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function codeOf(body: string): string | undefined {
  const oo = JSON.parse(body) as { resourceType?: string; issue?: { details?: { coding?: { code?: string }[] } }[] };
  return oo.resourceType === 'OperationOutcome' ? oo.issue?.[0]?.details?.coding?.[0]?.code : undefined;
}

async function refused(t: Test, send: () => Promise<Result>, status: number, code: string, msg: string): Promise<Result> {
  const before = up.requests.length;
  const res = await send();
  t.equal(res.status, status, `${msg}: status ${status}`);
  t.equal(codeOf(res.body), code, `${msg}: ${code}`);
  t.equal(up.requests.length, before, `${msg}: nothing reached the upstream`);
  return res;
}

/** Sends a request that must pass; returns what the upstream received for it. */
async function passes(t: Test, send: () => Promise<Result>, msg: string) {
  const before = up.requests.length;
  const res = await send();
  t.equal(res.status, 200, `${msg}: 200`);
  t.equal(up.requests.length, before + 1, `${msg}: forwarded once`);
  return up.requests[before];
}

/** The `client` of the access line of the last request sent (written when its exchange closes, maybe after the client has the body). */
async function loggedClient(gw: TestGateway): Promise<unknown> {
  return (await gw.accessLine(lastRequestId))['client'];
}

t.test('HTTPS required: plain HTTP is refused with INSECURE_TRANSPORT before the token is looked at', async (t) => {
  const gw = await gateway(t, { defaultRule: { require: { https: true } } });
  const url = `${gw.base}/Patient/${patientId}`;
  await refused(t, () => request(url), 403, 'INSECURE_TRANSPORT', 'valid token over http');
  await refused(t, () => request(url, { authorization: undefined }), 403, 'INSECURE_TRANSPORT', 'no token over http');
  await refused(
    t,
    () => request(url, { 'x-forwarded-proto': 'https' }),
    403,
    'INSECURE_TRANSPORT',
    'X-Forwarded-Proto from a peer that is not a trusted proxy',
  );
  await refused(
    t,
    () => request(url, { forwarded: 'proto=https', 'x-forwarded-ssl': 'on', 'front-end-https': 'on', 'x-url-scheme': 'https' }),
    403,
    'INSECURE_TRANSPORT',
    'other "I am https" headers',
  );
});

t.test('TLS termination: HTTPS works and negotiates TLS 1.3; a TLS 1.2-only client cannot connect by default', async (t) => {
  const cert = makeSelfSignedCert(t);
  const gw = await gateway(t, {
    server: { tls: { certFile: cert.certFile, keyFile: cert.keyFile } },
    defaultRule: { require: { https: true } },
  });
  t.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const url = `${gw.url}${new URL(gw.base).pathname}/Patient/${patientId}`;

  const before = up.requests.length;
  const ok = await httpsRequest(url, { ca: cert.cert, headers: auth });
  t.equal(ok.status, 200, 'a trusted-CA https request passes the https requirement');
  t.equal(ok.protocol, 'TLSv1.3', 'negotiated TLS 1.3');
  t.equal(up.requests[before]?.headers['x-forwarded-proto'], 'https', 'the upstream is told https');

  const anon = await httpsRequest(url, { ca: cert.cert });
  t.equal(anon.status, 401, 'TLS does not replace the token');
  t.equal(codeOf(anon.body), 'TOKEN_MISSING');

  await t.rejects(
    httpsRequest(url, { ca: cert.cert, headers: auth, maxVersion: 'TLSv1.2' }),
    { code: /ERR_SSL|EPROTO|ECONNRESET/ },
    'TLS 1.2 client refused',
  );
  t.equal(up.requests.length, before + 1, 'the failed handshake sent nothing upstream');
  await t.rejects(request(url.replace('https:', 'http:')), 'plain HTTP to the TLS port does not get through');
  t.equal(up.requests.length, before + 1);
});

t.test('TLS termination with minVersion TLSv1.2 admits a TLS 1.2 client', async (t) => {
  const cert = makeSelfSignedCert(t);
  const gw = await gateway(t, {
    server: { tls: { certFile: cert.certFile, keyFile: cert.keyFile, minVersion: 'TLSv1.2' } },
    defaultRule: { require: { https: true } },
  });
  const url = `${gw.url}${new URL(gw.base).pathname}/Patient/${patientId}`;
  const res = await httpsRequest(url, { ca: cert.cert, headers: auth, maxVersion: 'TLSv1.2' });
  t.equal(res.status, 200);
  t.equal(res.protocol, 'TLSv1.2');
});

t.test('X-Forwarded-Proto: https from a trusted proxy satisfies the https requirement', async (t) => {
  const gw = await gateway(t, { server: { trustedProxies: ['127.0.0.1/32'] }, defaultRule: { require: { https: true } } });
  const url = `${gw.base}/Patient/${patientId}`;
  const seen = await passes(t, () => request(url, { 'x-forwarded-proto': 'https' }), 'trusted proxy says https');
  t.equal(seen.headers['x-forwarded-proto'], 'https');
  await passes(t, () => request(url, { 'x-forwarded-proto': 'HTTPS' }), 'case-insensitive');
  await refused(t, () => request(url), 403, 'INSECURE_TRANSPORT', 'trusted proxy, no X-Forwarded-Proto');
  await refused(t, () => request(url, { 'x-forwarded-proto': 'http' }), 403, 'INSECURE_TRANSPORT', 'trusted proxy says http');
  await refused(
    t,
    () => request(url, { 'x-forwarded-proto': 'https, http' }),
    403,
    'INSECURE_TRANSPORT',
    'the last hop (http) counts, not a client-supplied first value',
  );
  await refused(t, () => request(url, { 'x-forwarded-proto': 'wss' }), 400, 'BAD_FORWARDED_HEADER', 'an unknown protocol');
});

t.test('X-Forwarded-Proto: https from an untrusted peer is ignored (spoofed)', async (t) => {
  const gw = await gateway(t, { server: { trustedProxies: ['10.0.0.0/8'] }, defaultRule: { require: { https: true } } });
  const url = `${gw.base}/Patient/${patientId}`;
  await refused(t, () => request(url, { 'x-forwarded-proto': 'https' }), 403, 'INSECURE_TRANSPORT', 'untrusted peer says https');
  await refused(
    t,
    () => request(url, { 'x-forwarded-proto': 'https', 'x-forwarded-for': '10.0.0.1' }),
    403,
    'INSECURE_TRANSPORT',
    'untrusted peer claims to come via a trusted proxy',
  );

  // Where https is not required the request passes, and the upstream is told the truth.
  const open = await gateway(t, { server: { trustedProxies: ['10.0.0.0/8'] } });
  const seen = await passes(t, () => request(`${open.base}/Patient/${patientId}`, { 'x-forwarded-proto': 'https' }), 'https not required');
  t.equal(seen.headers['x-forwarded-proto'], 'http', 'the spoofed value is replaced');
});

t.test('IP allow and deny lists refuse with 403 FORBIDDEN, before the token is looked at', async (t) => {
  const url = (gw: TestGateway, path = `Patient/${patientId}`) => `${gw.base}/${path}`;

  const allowOther = await gateway(t, { defaultRule: { require: { ipAllow: ['10.0.0.0/8'] } } });
  await refused(t, () => request(url(allowOther)), 403, 'FORBIDDEN', 'defaultRule ipAllow excludes 127.0.0.1');
  await refused(
    t,
    () => request(url(allowOther), { authorization: undefined }),
    403,
    'FORBIDDEN',
    'no token: still FORBIDDEN (IP is checked first)',
  );

  const allowLocal = await gateway(t, { defaultRule: { require: { ipAllow: ['10.0.0.0/8', '127.0.0.0/8'] } } });
  await passes(t, () => request(url(allowLocal)), 'defaultRule ipAllow includes 127.0.0.1');

  const deny = await gateway(t, { defaultRule: { require: { ipDeny: ['127.0.0.1'] } } });
  await refused(t, () => request(url(deny)), 403, 'FORBIDDEN', 'defaultRule ipDeny of the bare address');

  const denyWins = await gateway(t, { defaultRule: { require: { ipAllow: ['127.0.0.0/8'], ipDeny: ['127.0.0.1/32'] } } });
  await refused(t, () => request(url(denyWins)), 403, 'FORBIDDEN', 'deny wins over allow');

  const perRule = await gateway(t, {
    rules: [{ name: 'patients-from-the-lan-only', match: { resourceTypes: ['Patient'] }, require: { ipAllow: ['192.168.0.0/16'] } }],
  });
  await refused(t, () => request(url(perRule)), 403, 'FORBIDDEN', 'a rule ipAllow');
  await refused(t, () => request(url(perRule, `Patient?name=Net`)), 403, 'FORBIDDEN', 'the same rule on search');
  await passes(t, () => request(url(perRule, 'Observation?code=x')), 'a type the rule does not match');
});

t.test('ipDeny ::/0 denies IPv4 clients too (an IPv6 range covering ::ffff:0:0/96)', async (t) => {
  const gw = await gateway(t, { defaultRule: { require: { ipDeny: ['::/0'] } } });
  await refused(t, () => request(`${gw.base}/Patient/${patientId}`), 403, 'FORBIDDEN', 'IPv4 client, ipDeny ::/0');
  const allowAll = await gateway(t, { defaultRule: { require: { ipAllow: ['::/0'] } } });
  await passes(t, () => request(`${allowAll.base}/Patient/${patientId}`), 'IPv4 client, ipAllow ::/0');
});

t.test('X-Forwarded-For from an untrusted peer is ignored for IP decisions (spoofing)', async (t) => {
  const onlyTen = await gateway(t, { defaultRule: { require: { ipAllow: ['10.0.0.0/8'] } } });
  const url = `${onlyTen.base}/Patient/${patientId}`;
  await refused(t, () => request(url, { 'x-forwarded-for': '10.1.2.3' }), 403, 'FORBIDDEN', 'XFF claims an allowed address');
  await refused(t, () => request(url, { 'x-real-ip': '10.1.2.3' }), 403, 'FORBIDDEN', 'X-Real-IP claims an allowed address');
  await refused(t, () => request(url, { 'x-forwarded-for': ['10.1.2.3', '10.1.2.4'] }), 403, 'FORBIDDEN', 'two XFF header lines');

  const denyLocal = await gateway(t, { defaultRule: { require: { ipDeny: ['127.0.0.0/8'] } } });
  await refused(
    t,
    () => request(`${denyLocal.base}/Patient/${patientId}`, { 'x-forwarded-for': '203.0.113.9' }),
    403,
    'FORBIDDEN',
    'XFF cannot escape a deny',
  );

  const local = await gateway(t, { defaultRule: { require: { ipAllow: ['127.0.0.0/8'] } } });
  const seen = await passes(
    t,
    () =>
      request(`${local.base}/Patient/${patientId}`, {
        'x-forwarded-for': '10.1.2.3, 192.0.2.1',
        'x-real-ip': '10.1.2.3',
        forwarded: 'for=10.1.2.3',
      }),
    'real peer allowed',
  );
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'the upstream gets the real peer only');
  t.equal(seen.headers['x-real-ip'], undefined, 'X-Real-IP dropped');
  t.equal(seen.headers['forwarded'], undefined, 'Forwarded dropped');
  t.equal(await loggedClient(local), '127.0.0.1', 'the access log names the real peer');
});

t.test('X-Forwarded-For from a trusted peer is walked right to left through trusted hops', async (t) => {
  const gw = await gateway(t, {
    server: { trustedProxies: ['127.0.0.1/32', '192.0.2.0/24'] },
    rules: [{ name: 'one-client', match: { resourceTypes: ['Patient'] }, require: { ipAllow: ['203.0.113.7/32'] } }],
  });
  const url = `${gw.base}/Patient/${patientId}`;

  let seen = await passes(t, () => request(url, { 'x-forwarded-for': '203.0.113.7, 192.0.2.1' }), "'client, trusted proxy'");
  t.equal(await loggedClient(gw), '203.0.113.7', 'the client is the first untrusted hop from the right');
  t.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 192.0.2.1, 127.0.0.1', 'the upstream gets the accepted chain plus the peer');

  seen = await passes(
    t,
    () => request(url, { 'x-forwarded-for': '198.51.100.66, 203.0.113.7, 192.0.2.1' }),
    'a client-written entry on the left',
  );
  t.equal(await loggedClient(gw), '203.0.113.7');
  t.equal(seen.headers['x-forwarded-for'], '203.0.113.7, 192.0.2.1, 127.0.0.1', 'entries left of the client are dropped');

  seen = await passes(
    t,
    () => request(url, { 'x-forwarded-for': ['198.51.100.66', '203.0.113.7, 192.0.2.1'] }),
    'the chain split over two header lines',
  );
  t.equal(await loggedClient(gw), '203.0.113.7');

  await refused(
    t,
    () => request(url, { 'x-forwarded-for': '203.0.113.7, 198.51.100.66' }),
    403,
    'FORBIDDEN',
    'the allowed address left of an untrusted hop (spoofed by that hop)',
  );
  await refused(
    t,
    () => request(url, { 'x-forwarded-for': '203.0.113.7, 198.51.100.66, 192.0.2.1' }),
    403,
    'FORBIDDEN',
    'an untrusted hop in the middle stops the walk',
  );
  await refused(t, () => request(url), 403, 'FORBIDDEN', 'no XFF: the trusted proxy itself is the client');

  // Every hop trusted: the leftmost is the client.
  await refused(t, () => request(url, { 'x-forwarded-for': '192.0.2.9, 192.0.2.1' }), 403, 'FORBIDDEN', 'all hops trusted');
  t.equal(await loggedClient(gw), '192.0.2.9');
});

t.test('non-canonical IPv4 in X-Forwarded-For / X-Real-IP is refused with 400 BAD_FORWARDED_HEADER', async (t) => {
  const untrusted = await gateway(t, {});
  const trusted = await gateway(t, { server: { trustedProxies: ['127.0.0.1/32'] } });
  for (const gw of [untrusted, trusted]) {
    const who = gw === trusted ? 'trusted peer' : 'untrusted peer';
    const url = `${gw.base}/Patient/${patientId}`;
    for (const bad of [
      '127.1',
      '0x7f.0.0.1',
      '010.0.0.1',
      '2130706433',
      '127.0.0.01',
      '::ffff:127.1',
      '::ffff:010.0.0.1',
      '203.0.113.7, 0x7f.0.0.1',
      'unknown',
      'fe80::1%eth0',
      '',
    ]) {
      await refused(t, () => request(url, { 'x-forwarded-for': bad }), 400, 'BAD_FORWARDED_HEADER', `${who}: XFF ${JSON.stringify(bad)}`);
    }
    await refused(t, () => request(url, { 'x-real-ip': '010.0.0.1' }), 400, 'BAD_FORWARDED_HEADER', `${who}: X-Real-IP 010.0.0.1`);
  }
});

t.test('IPv4-mapped IPv6: a rule ipAllow ::ffff:127.0.0.1/128 admits the IPv4 client 127.0.0.1', async (t) => {
  const mapped = await gateway(t, { defaultRule: { require: { ipAllow: ['::ffff:127.0.0.1/128'] } } });
  await passes(t, () => request(`${mapped.base}/Patient/${patientId}`), 'mapped /128 rule, IPv4 client');
  const mappedNet = await gateway(t, { defaultRule: { require: { ipAllow: ['::ffff:127.0.0.0/104'] } } });
  await passes(t, () => request(`${mappedNet.base}/Patient/${patientId}`), 'mapped /104 rule');
  const other = await gateway(t, { defaultRule: { require: { ipAllow: ['::ffff:10.0.0.0/104'] } } });
  await refused(t, () => request(`${other.base}/Patient/${patientId}`), 403, 'FORBIDDEN', 'mapped 10/8 rule');
  const v6only = await gateway(t, { defaultRule: { require: { ipAllow: ['::1/128'] } } });
  await refused(t, () => request(`${v6only.base}/Patient/${patientId}`), 403, 'FORBIDDEN', '::1 is not 127.0.0.1');
});

async function dualStack(): Promise<boolean> {
  // Precondition: the OS reports an IPv4 client of a '::' listener as ::ffff:a.b.c.d.
  const server = net.createServer((s) => {
    seen = s.remoteAddress;
    s.end();
  });
  let seen: string | undefined;
  try {
    await new Promise<void>((res, rej) => server.once('error', rej).listen(0, '::', () => res()));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((res, rej) =>
      net
        .connect(port, '127.0.0.1')
        .once('error', rej)
        .once('close', () => res())
        .resume(),
    );
    return seen === '::ffff:127.0.0.1';
  } catch {
    return false;
  } finally {
    server.close();
  }
}

t.test(
  'a gateway listening on :: sees IPv4 clients as ::ffff:127.0.0.1 and treats them as 127.0.0.1',
  { skip: !(await dualStack()) && 'no dual-stack IPv6 here' },
  async (t) => {
    const gw = await gateway(t, { server: { host: '::' }, defaultRule: { require: { ipAllow: ['127.0.0.1/32'] } } });
    const port = (gw.server.address() as AddressInfo).port;
    const base = new URL(gw.base).pathname;

    const seen = await passes(t, () => request(`http://127.0.0.1:${port}${base}/Patient/${patientId}`), 'IPv4 rule, IPv4 client via ::');
    t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'the upstream gets the IPv4 spelling');
    t.equal(await loggedClient(gw), '127.0.0.1', 'the access log too');
    await refused(t, () => request(`http://[::1]:${port}${base}/Patient/${patientId}`), 403, 'FORBIDDEN', '::1 is not in 127.0.0.1/32');

    const mappedRule = await gateway(t, { server: { host: '::' }, defaultRule: { require: { ipAllow: ['::ffff:127.0.0.1/128'] } } });
    const p2 = (mappedRule.server.address() as AddressInfo).port;
    await passes(t, () => request(`http://127.0.0.1:${p2}${base}/Patient/${patientId}`), 'mapped rule, mapped peer');

    const trusted = await gateway(t, {
      server: { host: '::', trustedProxies: ['::ffff:127.0.0.1'] },
      defaultRule: { require: { ipAllow: ['203.0.113.7'] } },
    });
    const p3 = (trusted.server.address() as AddressInfo).port;
    const fwd = await passes(
      t,
      () => request(`http://127.0.0.1:${p3}${base}/Patient/${patientId}`, { 'x-forwarded-for': '203.0.113.7' }),
      'a mapped trusted proxy',
    );
    t.equal(fwd.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  },
);
