import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import t from 'tap';
import { isGatewayError } from '../../src/errors/catalogue.js';
import { upstreamAgent, withConnectTimeout } from '../../src/upstream/agent.js';

type StalledSocket = Duplex & { connecting: boolean };

/**
 * An agent with withConnectTimeout(timeoutMs) whose connections are sockets that stay
 * "connecting" until the test says otherwise (a unit test's stand-in for an unreachable host),
 * and one request on it, under way.
 */
function stalledRequest(timeoutMs: number, tls: boolean): { sockets: StalledSocket[]; outcome: Promise<unknown>; req: http.ClientRequest } {
  const agent = new http.Agent({ keepAlive: true });
  const sockets: StalledSocket[] = [];
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => {
    // Takes what is written, never answers.
    const s = Object.assign(new Duplex({ read() {}, write: (_c, _e, cb) => cb() }), {
      connecting: true,
      ...(tls ? { encrypted: true } : {}),
    });
    sockets.push(s);
    return s;
  };
  withConnectTimeout(agent, timeoutMs);
  const req = http.request({ host: '192.0.2.1', port: tls ? 443 : 80, path: '/fhir/Patient/1', agent });
  const outcome = new Promise<unknown>((resolve) => {
    req.on('response', () => resolve('answered'));
    req.on('error', resolve);
  });
  req.end();
  return { sockets, outcome, req };
}

/** The socket's side of "connected": TCP, then (over TLS) the handshake. */
function connect(s: StalledSocket, handshake: boolean): void {
  s.connecting = false;
  s.emit('connect');
  if (handshake) s.emit('secureConnect');
}

for (const tls of [false, true]) {
  const kind = tls ? 'TLS' : 'TCP';

  t.test(`${kind}: a connection not made within connectTimeoutMs fails its request with UPSTREAM_UNAVAILABLE`, async (t) => {
    const started = Date.now();
    const { sockets, outcome } = stalledRequest(50, tls);
    const err = await outcome;
    t.ok(isGatewayError(err), 'the request fails with the gateway error');
    t.equal((err as { code?: string }).code, 'UPSTREAM_UNAVAILABLE');
    t.match((err as Error).message, /connect timeout \(50 ms\)/);
    t.ok(Date.now() - started >= 45, 'not before the timeout');
    t.equal(sockets.length, 1);
    t.ok(sockets[0].destroyed, 'the connection attempt is given up');
  });

  t.test(`${kind}: a connection made in time is not cut by the timer later`, async (t) => {
    const { sockets, outcome, req } = stalledRequest(30, tls);
    await new Promise((r) => setImmediate(r));
    connect(sockets[0], tls);
    const got = await Promise.race([outcome, new Promise((r) => setTimeout(() => r('nothing'), 80))]);
    t.equal(got, 'nothing', 'no error after the timeout passed');
    t.notOk(sockets[0].destroyed, 'the connection stays');
    req.destroy();
  });
}

t.test('TLS: TCP connected but no handshake still times out (an upstream that never speaks TLS)', async (t) => {
  const { sockets, outcome } = stalledRequest(40, true);
  await new Promise((r) => setImmediate(r));
  connect(sockets[0], false);
  t.equal(((await outcome) as { code?: string } | undefined)?.code, 'UPSTREAM_UNAVAILABLE');
  t.ok(sockets[0].destroyed);
});

t.test(
  'upstreamAgent arms the timeout on its real connections: an https upstream that accepts TCP and never answers the handshake',
  async (t) => {
    const accepted: net.Socket[] = [];
    const silent = net.createServer((s) => void accepted.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const s of accepted) s.destroy();
      silent.close();
    });
    const { port } = silent.address() as AddressInfo;
    const agent = upstreamAgent(`https://127.0.0.1:${port}/fhir`, {
      connectTimeoutMs: 100,
      maxSockets: 4,
      rejectUnauthorized: true,
    } as never);
    t.teardown(() => agent.destroy());
    const started = Date.now();
    const err = await new Promise<unknown>((resolve) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/', agent }, () => resolve('answered'));
      req.on('error', resolve);
      req.end();
    });
    t.equal((err as { code?: string }).code, 'UPSTREAM_UNAVAILABLE');
    t.equal(accepted.length, 1, 'the TCP connection was made: the handshake is what timed out');
    t.ok(Date.now() - started < 3_000, 'by the timeout, not by some later failure');
  },
);
