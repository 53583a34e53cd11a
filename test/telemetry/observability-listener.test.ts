import t from 'tap';
import { startObservabilityListener } from '../../src/http/observability-listener.js';
import { Readiness } from '../../src/http/readiness.js';
import { createLogger } from '../../src/logging/logger.js';
import { LogSink } from '../helpers/gateway.js';

t.test('the observability listener: GET only, what is off says so, a failure inside is a 500', async (t) => {
  let ready = true;
  const readiness = new Readiness(
    {
      upstream: {
        run: async () => {
          if (!ready) throw new Error('down');
        },
        ttlMs: 0,
      },
    },
    createLogger('info', new LogSink()),
  );
  const off = await startObservabilityListener({ host: '127.0.0.1', port: 0 }, { readiness });
  t.teardown(() => off.close());
  t.equal((await fetch(`${off.url}/metrics`)).status, 404, 'metrics off: 404');
  t.match(await (await fetch(`${off.url}/metrics`)).json(), { error: /observability\.metrics/ });
  t.equal((await fetch(`${off.url}/nothing`)).status, 404);
  const post = await fetch(`${off.url}/healthz`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
  const head = await fetch(`${off.url}/readyz`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(await head.text(), '', 'HEAD: no body');
  t.equal((await fetch(`${off.url}/upstream/healthz?probe=1`)).status, 200, 'a query is not part of the path');
  ready = false;
  t.match(await (await fetch(`${off.url}/upstream/healthz`)).json(), { status: 'failing', ok: false, error: 'down' });

  const broken = await startObservabilityListener(
    { host: '127.0.0.1', port: 0 },
    {
      readiness,
      scrape: () => Promise.reject(new Error('registry broke')),
    },
  );
  t.teardown(() => broken.close());
  const r = await fetch(`${broken.url}/metrics`);
  t.equal(r.status, 500);
  t.same(await r.json(), { error: 'internal error' }, 'nothing of the failure goes out');
  const head2 = await fetch(`${broken.url}/metrics`, { method: 'HEAD' });
  t.equal(head2.status, 500);
  await t.rejects(
    startObservabilityListener({ host: '127.0.0.1', port: Number(new URL(off.url).port) }, { readiness }),
    { code: 'EADDRINUSE' },
    'a port in use fails the start',
  );
});
