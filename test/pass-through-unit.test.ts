import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough as PassThroughStream } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import { PassThrough } from '../src/proxy/pass-through.js';

t.test('forward for a client that already left sends nothing, releases the replacement body and watches nothing', async (t) => {
  const pt = new PassThrough(
    {
      url: 'http://127.0.0.1:9/fhir',
      aliases: [],
      connectTimeoutMs: 1_000,
      timeoutMs: 1_000,
      maxSockets: 4,
      rejectUnauthorized: true,
    },
    'http://gateway.test/fhir',
    pino({ level: 'silent' }),
  );
  t.teardown(() => pt.close());
  const body = new PassThroughStream();
  // The client's 'close' fired while the gateway was still checking the request.
  const res = { destroyed: true, on: () => t.fail('no listener on a closed response') } as unknown as ServerResponse;
  const req = { headers: { 'content-length': '5' }, url: '/fhir/Basic' } as unknown as IncomingMessage;
  pt.forward(req, res, {} as never, { path: '/Basic', forwardAuthorization: false, body });
  t.ok(body.destroyed, 'the spooled or size-limited body is destroyed (its file descriptor released)');
  t.equal(pt.idle.size, 0, 'nothing left in the idle watch');
  t.equal(req.url, '/fhir/Basic', 'the request was not prepared for forwarding');
});
