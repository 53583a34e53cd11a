import type { ServerResponse } from 'node:http';
import t from 'tap';
import { AccessLog } from '../../src/http/access-log.js';
import { createLogger } from '../../src/logging/logger.js';
import { LogSink } from '../helpers/gateway.js';

/** An exchange's end as the access log sees it, without a server. */
function ended(claims: Record<string, unknown> | undefined, finished = true, written = 0) {
  const sink = new LogSink();
  const log = new AccessLog(createLogger('info', sink));
  const res = {
    writableFinished: finished,
    statusCode: 200,
    headersSent: !finished,
    socket: written ? { bytesRead: 0, bytesWritten: written } : null,
    req: { socket: null, on: () => undefined },
    on: () => res,
  } as unknown as ServerResponse;
  const rec = log.start('r-1', res);
  if (claims) rec.principal = { token: { claims } } as unknown as NonNullable<typeof rec.principal>;
  log.ended(rec, res);
  return sink.lines.find((l) => l['msg'] === 'request')!;
}

t.test('who asked: sub and the client id under the names identity providers give it; nothing else of the token', async (t) => {
  t.match(ended({ sub: 'u1', client_id: 'app-1' }), { sub: 'u1', clientId: 'app-1' });
  t.match(ended({ sub: 'u1', azp: 'app-2' }), { clientId: 'app-2' }, 'Keycloak: azp');
  t.match(ended({ cid: 'app-3' }), { clientId: 'app-3' }, 'Okta: cid');
  const odd = ended({ sub: 42, client_id: ['x'] });
  t.notOk('sub' in odd || 'clientId' in odd, 'claims that are not strings are left out');
  const none = ended(undefined);
  t.match(none, { reqId: 'r-1', status: 200, bytesIn: 0, bytesOut: 0 }, 'no connection left to count: zero');
  t.notOk('sub' in none);
  t.match(ended(undefined, false, 120), { status: 499, aborted: true, statusSent: 200 }, 'cut after the head went out');
  const unsent = ended(undefined, false);
  t.match(unsent, { status: 499, aborted: true });
  t.notOk('statusSent' in unsent, 'a head never written out (no byte left) is not said to have been sent');
});

t.test('the line: level, time and service first, the request fields, the message; what a client chose is escaped', async (t) => {
  const sink = new LogSink();
  const log = new AccessLog(createLogger('info', sink));
  const res = {
    writableFinished: true,
    statusCode: 404,
    headersSent: true,
    socket: null,
    req: { socket: null, method: 'GET', on: () => undefined },
    on: () => res,
  } as unknown as ServerResponse;
  const rec = log.start('r-2', res);
  const sub = 'a"b\\c\nd\u2028é😀';
  rec.principal = { token: { claims: { sub, client_id: 'app "x"' } } } as unknown as NonNullable<typeof rec.principal>;
  rec.interaction = {
    kind: 'operation',
    method: 'POST',
    resourceType: 'Binary',
    id: 'b"1',
    operation: 'binary-access-read',
    path: '',
    query: '',
  } as unknown as typeof rec.interaction;
  rec.code = 'NOT_FOUND';
  log.ended(rec, res);
  t.equal(sink.raw.length, 1);
  t.match(sink.raw[0], /^\{"level":"info","time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","service":"fhir-binary-gateway","reqId":"r-2",/);
  t.match(sink.raw[0], /,"msg":"request"\}$/);
  t.same(sink.lines[0], {
    level: 'info',
    time: sink.lines[0]['time'],
    service: 'fhir-binary-gateway',
    reqId: 'r-2',
    sub,
    clientId: 'app "x"',
    method: 'POST',
    interaction: 'operation',
    resourceType: 'Binary',
    id: 'b"1',
    operation: 'binary-access-read',
    status: 404,
    code: 'NOT_FOUND',
    bytesIn: 0,
    bytesOut: 0,
    ms: sink.lines[0]['ms'],
    msg: 'request',
  });
  t.type(sink.lines[0]['ms'], 'number');
});

t.test('below info (warn and up) no access line; raised again by a reload, lines come back', async (t) => {
  const sink = new LogSink();
  const log = new AccessLog(createLogger('warn', sink));
  const res = {
    writableFinished: true,
    statusCode: 200,
    headersSent: true,
    socket: null,
    req: { socket: null, method: 'GET', on: () => undefined },
    on: () => res,
  } as unknown as ServerResponse;
  log.ended(log.start('quiet', res), res);
  t.equal(sink.raw.length, 0);
  log.level = 'debug';
  log.ended(log.start('loud', res), res);
  t.match(sink.lines, [{ reqId: 'loud' }]);
  log.level = 'error';
  log.ended(log.start('quiet-again', res), res);
  t.equal(sink.raw.length, 1);
});
