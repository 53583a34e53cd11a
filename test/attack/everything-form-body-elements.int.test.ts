// FINDING (medium, seventh outside check of issue 12): requireWholeEntries (security/answer-guard.ts) refuses `_elements` / `_fields` /
// `_summary=true|text` on a patient app's listings by reading the URL query only. An operation's
// form-encoded body "carries no attachments" and passes as it came (upstream/pass-through.ts
// checksBody: form bodies are not checked), and patientEverything() grants $everything whatever the
// method. A servlet-based upstream (HAPI: form POST parameters are merged into the request's
// parameters, and `_elements` is applied to whatever the method returns) strips the references the
// compartment guard judges non-compartment resources by: another patient's Device is served.
// The upstream here is the repo's HAPI-like compartment shim (Medplum-style $everything that returns
// referenced Devices and applies _fields/_elements) behind a 20-line front that does what a servlet
// container does with a form POST: its parameters join the query.
// Fixed: a listing held to a patient's compartment must be a GET, its parameters in the URL.
import t from 'tap';
import { otherPatientsDevice } from './helpers.js';
import { stack } from '../helpers/binary-stack.js';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mintToken } from '../helpers/auth.js';
import { startShim } from '../helpers/compartment-shim.js';

async function formPostFront(t: { teardown(fn: () => unknown): void }, upstream: string, log: string[]): Promise<string> {
  const target = new URL(upstream);
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      log.push(`${req.method} ${req.url} ${req.headers['content-type'] ?? ''} ${body}`);
      let method = req.method ?? 'GET';
      let path = req.url ?? '/';
      let send: string | undefined = body;
      const headers = { ...req.headers };
      // Servlet semantics (HAPI RestfulServer): a form POST's parameters are request parameters.
      if (
        method === 'POST' &&
        /^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '') &&
        path.includes('/$everything')
      ) {
        path += (path.includes('?') ? '&' : '?') + body;
        method = 'GET';
        send = undefined;
        delete headers['content-type'];
        delete headers['content-length'];
      }
      const fwd = request({ host: target.hostname, port: target.port, method, path, headers }, (a) => {
        res.writeHead(a.statusCode ?? 502, a.headers);
        a.pipe(res);
      });
      fwd.end(send);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`;
}

t.test('a patient app strips references through a form-encoded $everything body', async (t) => {
  const log: string[] = [];
  const s = await stack(t, {}, async (up) => formPostFront(t, await startShim(t, up.url), log));
  const { gw, key } = s;
  const me = await otherPatientsDevice(s);
  const auth = `Bearer ${await mintToken(key, { claims: { scope: 'patient/*.rs', patient: me } })}`;
  const get = async (q: string) => {
    const r = await fetch(`${gw.base}/Patient/${me}/$everything${q}`, {
      headers: { authorization: auth, accept: 'application/fhir+json' },
    });
    return { status: r.status, body: await r.text() };
  };
  const plain = await get('');
  t.equal(plain.status, 200, 'control: GET $everything 200');
  t.notMatch(plain.body, /SECRET-PUMP/, "control: the other patient's Device is withheld");
  t.equal((await get('?_elements=id,deviceName,code')).status, 403, 'control: ?_elements refused');
  t.equal((await get('?_fields=id,deviceName,code')).status, 403, 'control: ?_fields refused');

  log.length = 0;
  const r = await fetch(`${gw.base}/Patient/${me}/$everything`, {
    method: 'POST',
    headers: { authorization: auth, accept: 'application/fhir+json', 'content-type': 'application/x-www-form-urlencoded' },
    body: '_elements=id,deviceName,code',
  });
  const body = await r.text();
  t.comment(`POST form: ${r.status}; upstream saw: ${JSON.stringify(log)}; body: ${body.slice(0, 500)}`);
  t.notOk(
    r.status === 200 && /SECRET-PUMP/.test(body),
    `POST form _elements must be held like ?_elements (got ${r.status}, other's Device present: ${/SECRET-PUMP/.test(body)})`,
  );
});
