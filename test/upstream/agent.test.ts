import http from 'node:http';
import { Duplex } from 'node:stream';
import t from 'tap';
import { isGatewayError } from '../../src/errors/catalogue.js';
import { upstreamAgent, withConnectTimeout } from '../../src/upstream/agent.js';

/** An agent whose connections are sockets that stay "connecting" until the test says otherwise (a unit test's stand-in for an unreachable host). */
function stalledAgent(tls = false): { agent: http.Agent; sockets: (Duplex & { connecting: boolean })[] } {
  const agent = new http.Agent({ keepAlive: true });
  const sockets: (Duplex & { connecting: boolean })[] = [];
  (agent as unknown as { createConnection: () => Duplex }).createConnection = () => {
    // Takes what is written, never answers.
    const s = Object.assign(new Duplex({ read() {}, write: (_c, _e, cb) => cb() }), {
      connecting: true,
      ...(tls ? { encrypted: true } : {}),
    });
    sockets.push(s);
    return s;
  };
  return { agent, sockets };
}

t.test('a connection not made within connectTimeoutMs fails its request with UPSTREAM_UNAVAILABLE', async (t) => {
  const { agent, sockets } = stalledAgent();
  withConnectTimeout(agent, 50);
  const started = Date.now();
  const err = await new Promise<unknown>((resolve) => {
    const req = http.request({ host: '192.0.2.1', port: 80, path: '/fhir/Patient/1', agent }, () => resolve(undefined));
    req.on('error', resolve);
    req.end();
  });
  t.ok(isGatewayError(err), 'the request fails with the gateway error');
  t.equal((err as { code?: string }).code, 'UPSTREAM_UNAVAILABLE');
  t.match((err as Error).message, /connect timeout \(50 ms\)/);
  t.ok(Date.now() - started >= 45, 'not before the timeout');
  t.equal(sockets.length, 1);
  t.ok(sockets[0].destroyed, 'the connection attempt is given up');
});

t.test('a connection made in time is not cut by the timer later', async (t) => {
  const { agent, sockets } = stalledAgent();
  withConnectTimeout(agent, 30);
  const req = http.request({ host: '192.0.2.1', port: 80, path: '/', agent });
  const errors: unknown[] = [];
  req.on('error', (e) => errors.push(e));
  req.end();
  await new Promise((r) => setImmediate(r));
  sockets[0].connecting = false;
  sockets[0].emit('connect');
  await new Promise((r) => setTimeout(r, 80));
  t.same(errors, [], 'no error after the timeout passed');
  t.notOk(sockets[0].destroyed, 'the connection stays');
  req.destroy();
});

t.test('over TLS the connection is made when the handshake is: TCP connected but no handshake still times out', async (t) => {
  const { agent, sockets } = stalledAgent(true);
  withConnectTimeout(agent, 40);
  const err = await new Promise<unknown>((resolve) => {
    const req = http.request({ host: '192.0.2.1', port: 443, path: '/', agent }, () => resolve(undefined));
    req.on('error', resolve);
    req.end();
    setImmediate(() => {
      // An upstream that accepts TCP and never speaks TLS.
      sockets[0].connecting = false;
      sockets[0].emit('connect');
    });
  });
  t.equal((err as { code?: string } | undefined)?.code, 'UPSTREAM_UNAVAILABLE', 'the handshake that never came is timed out');
  t.ok(sockets[0].destroyed);
});

t.test('over TLS a finished handshake clears the timer', async (t) => {
  const { agent, sockets } = stalledAgent(true);
  withConnectTimeout(agent, 30);
  const req = http.request({ host: '192.0.2.1', port: 443, path: '/', agent });
  const errors: unknown[] = [];
  req.on('error', (e) => errors.push(e));
  req.end();
  await new Promise((r) => setImmediate(r));
  sockets[0].connecting = false;
  sockets[0].emit('connect');
  sockets[0].emit('secureConnect');
  await new Promise((r) => setTimeout(r, 80));
  t.same(errors, []);
  t.notOk(sockets[0].destroyed);
  req.destroy();
});

t.test('upstreamAgent arms the timeout on real connections: a refused port fails as refused, not as a timeout', async (t) => {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  const agent = upstreamAgent(`http://127.0.0.1:${port}/fhir`, {
    connectTimeoutMs: 1_000,
    maxSockets: 4,
    rejectUnauthorized: true,
  } as never);
  t.teardown(() => agent.destroy());
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', agent }, () => resolve(new Error('answered')));
    req.on('error', resolve);
    req.end();
  });
  t.equal(err.code, 'ECONNREFUSED');
});
