import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough as PassThroughStream } from 'node:stream';
import pino from 'pino';
import t from 'tap';
import http from 'node:http';
import { BaseUrls } from '../../src/lib/public-url.js';
import type { ResponseRewrite } from '../../src/rewrite/response-rewrite.js';
import type { Exchange } from '../../src/security/exchange.js';
import { Forwarder } from '../../src/upstream/forwarder.js';

t.test('forward for a client that already left sends nothing, releases the replacement body and watches nothing', async (t) => {
  const agent = new http.Agent();
  const pt = new Forwarder({
    urls: new BaseUrls('http://127.0.0.1:9/fhir', [], 'http://gateway.test/fhir'),
    agent,
    upstream: { timeoutMs: 1_000 },
    responses: {} as ResponseRewrite,
    log: pino({ level: 'silent' }),
  });
  t.teardown(() => {
    pt.close();
    agent.destroy();
  });
  const body = new PassThroughStream();
  // The client's 'close' fired while the gateway was still checking the request.
  const res = { destroyed: true, on: () => t.fail('no listener on a closed response') } as unknown as ServerResponse;
  const req = { headers: { 'content-length': '5' }, url: '/fhir/Basic' } as unknown as IncomingMessage;
  pt.forward({ req, res } as Exchange, { path: '/Basic', body });
  t.ok(body.destroyed, 'the spooled or size-limited body is destroyed (its file descriptor released)');
  t.equal(pt.idle.size, 0, 'nothing left in the idle watch');
  t.equal(req.url, '/fhir/Basic', 'the request was not prepared for forwarding');
});
