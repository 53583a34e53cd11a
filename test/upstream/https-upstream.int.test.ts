/**
 * An upstream behind TLS (HAPI behind its own certificate): forwarded requests go over HTTPS,
 * verified unless upstream.rejectUnauthorized is false, on the pooled keep-alive connections.
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { makeSelfSignedCert } from '../helpers/tls.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds' } });

interface TlsUpstream {
  readonly url: string;
  readonly seen: { method: string; url: string; host: string | undefined; encrypted: boolean }[];
  /** TLS connections accepted so far. */
  connections(): number;
}

async function tlsUpstream(t: Test): Promise<TlsUpstream> {
  const cert = makeSelfSignedCert(t);
  const seen: TlsUpstream['seen'] = [];
  let connections = 0;
  const server = https.createServer({ cert: cert.cert, key: readFileSync(cert.keyFile) }, (req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, encrypted: 'encrypted' in req.socket });
    const body = JSON.stringify({ resourceType: 'Patient', id: 'p1', meta: { versionId: '1' } });
    res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body), etag: 'W/"1"' });
    res.end(body);
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())).then(() => undefined));
  t.teardown(() => server.closeAllConnections());
  const { port } = server.address() as AddressInfo;
  return { url: `https://127.0.0.1:${port}/fhir`, seen, connections: () => connections };
}

t.test('an HTTPS upstream with a certificate the gateway is told not to verify: reads are forwarded over TLS', async (t) => {
  const up = await tlsUpstream(t);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { rejectUnauthorized: false } } });
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${gw.base}/Patient/p1`, { headers: { authorization: `Bearer ${token}` } });
    t.equal(res.status, 200);
    t.equal(((await res.json()) as { id: string }).id, 'p1');
  }
  t.same(
    up.seen.map((s) => [s.method, s.url, s.host, s.encrypted]),
    Array.from({ length: 3 }, () => ['GET', '/fhir/Patient/p1', new URL(up.url).host, true]),
    'the upstream got the path under its own base, its own Host, over TLS',
  );
  t.equal(up.connections(), 1, 'one pooled TLS connection carried all three');
});

t.test('an HTTPS upstream whose certificate does not verify is refused by default: 502, the cause in the log', async (t) => {
  const up = await tlsUpstream(t);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const res = await fetch(`${gw.base}/Patient/p1`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(res.status, 502);
  t.match(await res.text(), /UPSTREAM_UNAVAILABLE/);
  t.equal(up.seen.length, 0, 'nothing reached the unverified upstream');
  const line = gw.logs.lines.find((l) => l['msg'] === 'upstream exchange failed');
  t.match(line?.['cause'], /SELF_SIGNED|CERT|certificate/i, 'the TLS failure is named in the log');
});
