import { X509Certificate } from 'node:crypto';
import { copyFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import { buildConfig } from '../../src/config/load.js';
import { startGateway } from '../../src/app/server.js';
import { createLogger } from '../../src/logging/logger.js';
import { LogSink } from '../helpers/gateway.js';
import { serve } from '../helpers/lifecycle.js';
import { eventually } from '../helpers/poll.js';
import { makeSelfSignedCert } from '../helpers/tls.js';

/** A gateway in front of `upstream`, capabilities open (no token needed), started by hand: these tests close it themselves. */
async function gateway(t: Test, upstream: string, server: Record<string, unknown> = {}) {
  const sink = new LogSink();
  const config = buildConfig(
    {
      server: { host: '127.0.0.1', port: 0, ...server },
      upstream: { url: upstream, timeoutMs: 60_000 },
      auth: { jwksUri: 'http://127.0.0.1:1/jwks', issuers: ['i'], audiences: ['a'] },
      rules: [{ name: 'open', match: { interactions: ['capabilities'] }, require: { auth: false, smart: false } }],
      defaultRule: { require: { https: false, auth: true, smart: true } },
      storage: { filesystem: { directory: t.testdir() } },
    },
    '(test)',
    process.cwd(),
  );
  const gw = await startGateway(config, createLogger('info', sink));
  return { gw, sink, config };
}

/** An upstream whose /metadata answers after `delayMs` (Infinity: never). */
async function slowUpstream(t: Test, delayMs: number): Promise<string> {
  return serve(
    t,
    (_req, res) => {
      if (delayMs === Infinity) return;
      setTimeout(
        () => res.writeHead(200, { 'content-type': 'application/fhir+json' }).end('{"resourceType":"CapabilityStatement"}'),
        delayMs,
      );
    },
    '/fhir',
  );
}

function get(url: string, agent?: http.Agent): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

t.test('a client holding an idle keep-alive connection does not hold the shutdown up', async (t) => {
  const { gw } = await gateway(t, await slowUpstream(t, 0));
  const agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 60_000 });
  t.teardown(() => agent.destroy());
  t.equal((await get(`${gw.url}/metadata`, agent)).status, 200);
  const socket = Object.values(agent.freeSockets)[0]?.[0];
  t.ok(socket, 'the connection is kept, idle');
  const started = performance.now();
  await gw.close(30_000);
  t.ok(performance.now() - started < 2_000, `closed in ${Math.round(performance.now() - started)} ms, not at the deadline`);
  await eventually(() => socket!.destroyed, 'the idle connection closed');
});

t.test('an exchange under way is finished before the gateway closes', async (t) => {
  const { gw } = await gateway(t, await slowUpstream(t, 400));
  const answer = get(`${gw.url}/metadata`);
  await new Promise((r) => setTimeout(r, 100));
  const closed = gw.close(30_000);
  const got = await answer;
  t.equal(got.status, 200, 'answered in full');
  t.match(got.body, /CapabilityStatement/);
  await closed;
});

t.test('at the deadline what is left is cut, and said so', async (t) => {
  const { gw, sink } = await gateway(t, await slowUpstream(t, Infinity));
  const answer = get(`${gw.url}/metadata`).then(
    () => 'answered',
    () => 'cut',
  );
  await new Promise((r) => setTimeout(r, 100));
  const started = performance.now();
  await gw.close(300);
  const took = performance.now() - started;
  t.ok(took >= 280 && took < 3_000, `closed at its deadline (${Math.round(took)} ms)`);
  t.equal(await answer, 'cut');
  t.match(
    sink.lines.find((l) => l['msg'] === 'shutdown deadline reached: exchanges still under way are cut'),
    { level: 'warn', connections: 1, deadlineMs: 300 },
  );
});

t.test('a renewed certificate is served to new connections without a restart', async (t) => {
  const first = makeSelfSignedCert(t);
  const second = makeSelfSignedCert(t);
  const live = makeSelfSignedCert(t); // the files the gateway is configured with: rewritten in place
  copyFileSync(first.certFile, live.certFile);
  copyFileSync(first.keyFile, live.keyFile);
  const { gw, sink, config } = await gateway(t, await slowUpstream(t, 0), { tls: { certFile: live.certFile, keyFile: live.keyFile } });
  t.teardown(() => gw.close(1000));
  const port = Number(new URL(gw.url).port);
  const served = () =>
    new Promise<string>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/metadata', rejectUnauthorized: false, agent: false }, (res) => {
        resolve((res.socket as TLSSocket).getPeerCertificate().fingerprint256);
        res.resume();
      });
      req.on('error', reject);
    });
  const fingerprint = (pem: Buffer) => new X509Certificate(pem).fingerprint256;
  t.equal(await served(), fingerprint(first.cert));
  copyFileSync(second.certFile, live.certFile);
  copyFileSync(second.keyFile, live.keyFile);
  gw.reload(config); // SIGHUP re-reads them at once (the file watch would within 5 s)
  t.equal(await served(), fingerprint(second.cert), 'the new certificate');
  t.ok(sink.lines.some((l) => l['msg'] === 'TLS certificate reloaded'));
  // A half-written pair (a key that does not match) keeps the certificate in use.
  copyFileSync(first.keyFile, live.keyFile);
  gw.reload(config);
  t.equal(await served(), fingerprint(second.cert), 'still the one that loads');
  t.ok(sink.lines.some((l) => l['msg'] === 'TLS files do not load: the certificate in use stays' && l['level'] === 'error'));
});
