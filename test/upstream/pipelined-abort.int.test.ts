/**
 * A client that pipelines requests and leaves before they are answered. Node never closes the
 * responses still waiting their turn; the gateway must still let go of their upstream exchanges
 * (or they run on, hold pool sockets and stay in the idle watch for good) and log and audit them.
 */
import net from 'node:net';
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/poll.js';
import { httpMessage, portOf, startRecordingServer } from '../helpers/raw-http.js';

const key = await makeKey('k1');
const jwks = await startJwksServer(t, [key]);
const token = await mintToken(key, { claims: { scope: 'user/*.cruds' } });

t.test('pipelined requests cut by the client: every upstream exchange is let go, every request logged as 499', async (t) => {
  // The upstream holds every answer: the client leaves while all three are in flight upstream.
  const upstreamClosed: { url: string; finished: boolean }[] = [];
  const up = await startRecordingServer(t, (req, res) => {
    req.resume();
    res.on('close', () => upstreamClosed.push({ url: req.url ?? '', finished: res.writableFinished }));
    setTimeout(() => {
      if (res.destroyed) return;
      const body = JSON.stringify({ resourceType: 'Patient', id: 'p' });
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }, 1_500);
  });
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url, config: { upstream: { timeoutMs: 60_000 } } });
  const head = (line: string) => httpMessage([line, 'Host: gateway.test', `Authorization: Bearer ${token}`]);
  const socket = net.connect(portOf(gw.url), '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  socket.write(
    Buffer.concat([head('GET /fhir/Patient/p1 HTTP/1.1'), head('GET /fhir/Patient/p2 HTTP/1.1'), head('GET /fhir/Patient/p3 HTTP/1.1')]),
  );
  await eventually(() => up.requests.length === 3 || undefined, 'all three reached the upstream', 5_000);
  socket.destroy();

  const closed = await eventually(() => (upstreamClosed.length === 3 ? upstreamClosed : undefined), 'the upstream exchanges closed', 1_000);
  t.same(
    closed.map((c) => c.finished).sort(),
    [false, false, false],
    'all three upstream exchanges were cut when the client left, not run to the end for nobody',
  );
  const lines = await eventually(
    () => {
      const l = gw.logs.lines.filter((x) => x['msg'] === 'request');
      return l.length === 3 ? l : undefined;
    },
    'an access line for each request',
    2_000,
  );
  t.same(lines.map((l) => [l['id'], l['status'], l['aborted']]).sort(), [
    ['p1', 499, true],
    ['p2', 499, true],
    ['p3', 499, true],
  ]);
});
