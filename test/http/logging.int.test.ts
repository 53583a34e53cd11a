import t from 'tap';
import type { Test } from 'tap';
import { connect, createServer, type AddressInfo } from 'node:net';
import { makeKey, mintToken, startJwksServer, type TestKey } from '../helpers/auth.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { eventually } from '../helpers/poll.js';
import { startUpstream } from '../helpers/upstream.js';

/**
 * What the gateway logs, read the way an operator's pipeline reads it: every line parsed as
 * JSON, then searched for what must never be there (tokens, search parameters, bodies).
 */

const NAME = 'Quetzalcoatlina'; // a "patient name" in a query string (PHI)
const BODY_MARKER = 'BODY-MARKER-7f3a91c2';
const ALIEN_ID = 'trace-from-client.42';

interface Sent {
  what: string;
  status: number;
  reqId: string | null;
  interaction: string | undefined;
}

async function setup(t: Test): Promise<{ gw: TestGateway; key: TestKey }> {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, {
    upstream: up.url,
    jwksUri: jwks.url,
    config: { rules: [{ name: 'bundles', match: { interactions: ['batch', 'transaction'] }, require: { smart: false } }] },
  });
  return { gw, key };
}

/**
 * The access lines (msg 'request') once there are `n`: they arrive when each exchange closes,
 * possibly after the client saw the answer. Then a short bounded wait, so that an extra line
 * (a request logged twice) would be there for the caller's count to see.
 */
async function accessLines(gw: TestGateway, n: number): Promise<Record<string, unknown>[]> {
  const get = () => gw.logs.lines.filter((l) => l['msg'] === 'request');
  await eventually(() => get().length >= n, `${n} access lines`);
  await new Promise((r) => setTimeout(r, 50));
  return get();
}

/** An HTTP/1.1 request written by hand (for header shapes fetch will not send). */
function raw(base: string, head: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.end(head));
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

t.test('log lines are JSON and never carry tokens, query values or bodies; one access line per request', async (t) => {
  const { gw, key } = await setup(t);
  const token = await mintToken(key, { claims: { scope: 'user/Patient.cruds user/Observation.rs' } });
  const readOnly = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });
  const expired = await mintToken(key, { claims: { scope: 'user/Patient.cruds' }, expiresIn: -3600 });
  const forged = `${token.slice(0, token.lastIndexOf('.'))}.${'A'.repeat(86)}`;
  const secrets = [token, readOnly, expired, forged, token.split('.')[2], 'Bearer', NAME, BODY_MARKER];
  const sent: Sent[] = [];

  const call = async (what: string, path: string, init: RequestInit & { headers?: Record<string, string> } = {}, interaction?: string) => {
    const r = await fetch(`${gw.base}${path}`, init);
    await r.arrayBuffer();
    sent.push({ what, status: r.status, reqId: r.headers.get('x-request-id'), interaction });
    return r;
  };
  const auth = (tok: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${tok}`, ...extra });
  const json = { 'content-type': 'application/fhir+json' };
  const patient = JSON.stringify({ resourceType: 'Patient', name: [{ family: NAME, given: [BODY_MARKER] }] });

  const created = await call(
    'create with a marked body',
    '/Patient',
    { method: 'POST', headers: auth(token, json), body: patient },
    'create',
  );
  t.equal(created.status, 201);
  const id = created.headers.get('location')?.split('/')[5];
  t.equal((await call('read', `/Patient/${id}`, { headers: auth(token) }, 'read')).status, 200);
  t.equal((await call('search by name', `/Patient?name=${NAME}&given=${BODY_MARKER}`, { headers: auth(token) }, 'search')).status, 200);
  t.equal(
    (await call('search, encoded name', `/Patient?family=${encodeURIComponent(`${NAME} Jr`)}`, { headers: auth(token) }, 'search')).status,
    200,
  );
  t.equal((await call('upstream 404', `/Patient/does-not-exist?name=${NAME}`, { headers: auth(token) }, 'read')).status, 404);
  t.equal((await call('no token', `/Patient?name=${NAME}`, {}, 'search')).status, 401);
  t.equal((await call('expired token', `/Patient?name=${NAME}`, { headers: auth(expired) }, 'search')).status, 401);
  t.equal((await call('forged signature', `/Patient?name=${NAME}`, { headers: auth(forged) }, 'search')).status, 401);
  t.equal(
    (await call('garbage token', `/Patient?name=${NAME}`, { headers: { authorization: `Bearer ${BODY_MARKER}` } }, 'search')).status,
    401,
  );
  t.equal(
    (await call('insufficient scope with a body', '/Patient', { method: 'POST', headers: auth(readOnly, json), body: patient }, 'create'))
      .status,
    403,
  );
  // (Refused while classifying or just after: which interaction it is logged with is not the point.)
  t.equal((await call('token in the query', `/Patient?access_token=${token}&name=${NAME}`, {})).status, 400);
  t.equal(
    (
      await call(
        'bad bundle with a marker',
        '/',
        { method: 'POST', headers: auth(token, json), body: `{"resourceType":"Bundle","type":"batch","id":"${BODY_MARKER}","type":"x"}` },
        'batch',
      )
    ).status,
    400,
  );
  t.equal(
    (
      await call(
        'bundle entry refused',
        '/',
        {
          method: 'POST',
          headers: auth(readOnly, json),
          body: JSON.stringify({
            resourceType: 'Bundle',
            type: 'transaction',
            entry: [{ resource: JSON.parse(patient), request: { method: 'POST', url: `Patient?name=${NAME}` } }],
          }),
        },
        'batch',
      )
    ).status,
    403,
  );
  t.equal((await call('client request id', `/Patient/${id}`, { headers: auth(token, { 'x-request-id': ALIEN_ID }) }, 'read')).status, 200);
  t.equal(
    (await call('insane client request id', `/Patient/${id}`, { headers: auth(token, { 'x-request-id': `${BODY_MARKER} <x>` }) }, 'read'))
      .status,
    200,
  );

  const lines = await accessLines(gw, sent.length);

  t.test('every line is JSON and holds no secret', async (t) => {
    t.ok(gw.logs.raw.length > sent.length, 'sanity: lines were captured');
    for (const line of gw.logs.raw) {
      let parsed: unknown;
      t.doesNotThrow(() => (parsed = JSON.parse(line)), 'a JSON line');
      t.type(parsed, 'object');
      for (const s of secrets) {
        if (line.includes(s))
          t.fail(`a log line contains ${s === 'Bearer' ? 'the word Bearer' : `a secret (${s.slice(0, 12)}…)`}: ${line.slice(0, 300)}`);
      }
      t.notMatch(line, /eyJ[\w-]+\.eyJ/, 'nothing that looks like a JWT');
    }
  });

  t.test('one access line per request, matched by X-Request-Id', async (t) => {
    t.equal(lines.length, sent.length, 'exactly one access line per request');
    for (const s of sent) {
      t.ok(s.reqId, `${s.what}: X-Request-Id in the response`);
      const mine = lines.filter((l) => l['reqId'] === s.reqId);
      t.equal(mine.length, 1, `${s.what}: one line with reqId ${s.reqId}`);
      const l = mine[0];
      if (!l) continue;
      t.equal(l['status'], s.status, `${s.what}: status`);
      if (s.interaction !== undefined) t.equal(l['interaction'], s.interaction, `${s.what}: interaction`);
      t.type(l['ms'], 'number', `${s.what}: ms`);
      t.ok((l['ms'] as number) >= 0 && (l['ms'] as number) < 60_000, `${s.what}: ms is a duration`);
      t.equal(l['level'], 'info');
      t.type(l['time'], 'string');
      t.equal(l['client'], '127.0.0.1');
      for (const k of ['url', 'path', 'query', 'headers', 'body', 'req', 'res']) t.notOk(k in l, `${s.what}: no ${k}`);
      if (s.status >= 400 && s.what !== 'upstream 404') {
        t.type(l['code'], 'string', `${s.what}: the refusal code is logged`);
      }
    }
    t.not(
      sent.find((s) => s.what === 'client request id')?.reqId,
      ALIEN_ID,
      'a client (not a trusted proxy) does not choose its request id',
    );
    t.not(sent.find((s) => s.what === 'insane client request id')?.reqId, `${BODY_MARKER} <x>`, 'an insane one is replaced');
    const ids = sent.map((s) => s.reqId);
    t.equal(new Set(ids).size, ids.length, 'request ids are unique');
  });
});

/** A URL where nothing listens (a port that was just free). */
async function deadUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return `http://127.0.0.1:${port}/fhir`;
}

t.test('an unreachable upstream: the warning line names the request id, not its query', async (t) => {
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: await deadUrl(), jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });
  const r = await fetch(`${gw.base}/Patient?name=${NAME}`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(r.status, 502);
  await r.arrayBuffer();
  const reqId = r.headers.get('x-request-id');
  const lines = await accessLines(gw, 1);
  t.equal(lines.length, 1);
  t.match(lines[0], { reqId, status: 502, interaction: 'search' });
  const warn = gw.logs.lines.filter((l) => l['level'] === 'warn' && l['reqId'] === reqId);
  t.equal(warn.length, 1, 'one warning for the failed exchange');
  t.match(warn[0], { code: 'UPSTREAM_UNAVAILABLE' });
  for (const line of gw.logs.raw) {
    t.notOk(line.includes(NAME), 'no query value');
    t.notOk(line.includes(token), 'no token');
    t.notOk(line.includes('Bearer'), 'no Bearer');
  }
});

t.test('requests refused before classification still log one line and nothing secret', async (t) => {
  const { gw, key } = await setup(t);
  const token = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });
  // (fetch would resolve `..` itself before sending.)
  const paths = [`/Patient//1?name=${NAME}`, `/patient?name=${NAME}`, `/Patient%2F1?name=${NAME}`, `/Patient;x=1?name=${NAME}`];
  const ids: (string | null)[] = [];
  for (const p of paths) {
    const r = await fetch(`${gw.base}${p}`, { headers: { authorization: `Bearer ${token}` } });
    t.ok(r.status === 400 || r.status === 404, `${p} refused (${r.status})`);
    await r.arrayBuffer();
    ids.push(r.headers.get('x-request-id'));
  }
  const lines = await accessLines(gw, paths.length);
  t.equal(lines.length, paths.length, 'one access line each');
  for (const [i, id] of ids.entries()) {
    t.ok(id, 'X-Request-Id in the response');
    const l = lines.filter((x) => x['reqId'] === id);
    t.equal(l.length, 1, `${paths[i]}: its line`);
    t.type(l[0]?.['status'], 'number');
    t.type(l[0]?.['ms'], 'number');
    t.type(l[0]?.['code'], 'string', 'the refusal code is logged');
    t.equal(l[0]?.['method'], 'GET', 'and the method: a spike of refusals can be told apart');
  }
  for (const line of gw.logs.raw) {
    t.notOk(line.includes(NAME), 'no query value');
    t.notOk(line.includes(token) || line.includes('Bearer'), 'no token');
  }
});

// Known gap (src/http/gateway.ts, not fixed here): a request refused while its context is built
// (duplicate header, bad X-Forwarded-For) is answered and logged without any request id.
const CONTEXT_ID_GAP = {};

t.test('requests refused while reading the request context', async (t) => {
  const { gw, key } = await setup(t);
  const token = await mintToken(key, { claims: { scope: 'user/Patient.rs' } });
  const u = new URL(gw.base);
  const head = (extra: string) => `GET ${u.pathname}/Patient?name=${NAME} HTTP/1.1\r\nHost: ${u.host}\r\n${extra}Connection: close\r\n\r\n`;
  const responses = [
    await raw(gw.base, head(`Authorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\n`)),
    await raw(gw.base, head(`Authorization: Bearer ${token}\r\nX-Forwarded-For: 127.1\r\n`)),
  ];
  t.match(responses[0], /^HTTP\/1\.1 400 /);
  t.match(responses[0], /DUPLICATE_HEADER/);
  t.match(responses[1], /^HTTP\/1\.1 400 /);
  t.match(responses[1], /BAD_FORWARDED_HEADER/);
  const lines = await accessLines(gw, 2);
  t.equal(lines.length, 2, 'one line each');
  t.same(
    lines.map((l) => l['code']),
    ['DUPLICATE_HEADER', 'BAD_FORWARDED_HEADER'],
    'with the refusal code',
  );
  for (const l of lines) t.equal(l['status'], 400);
  for (const [i, res] of responses.entries()) {
    const id = /\r\nx-request-id: ([^\r]+)\r\n/i.exec(res)?.[1];
    t.ok(id, `response ${i} carries X-Request-Id`, CONTEXT_ID_GAP);
    t.equal(
      lines.filter((l) => id !== undefined && l['reqId'] === id).length,
      1,
      `response ${i}: its access line has the same reqId`,
      CONTEXT_ID_GAP,
    );
  }
  for (const line of gw.logs.raw) t.notOk(line.includes(token) || line.includes('Bearer') || line.includes(NAME), 'nothing secret');
});
