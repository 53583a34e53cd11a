// FINDING (attack round 5, caching of answers that carry content; a member of
// inflated-answer-cache-control's class): a read the rewrite engine answers (a DocumentReference
// with its stored PDF inflated) gets `Cache-Control: no-store` on its 200 — but its HEAD and its
// 304 are relayed from the upstream as they came (response-rewrite.ts `send`: HEAD / 304 →
// relay): no Cache-Control at all, and the HEAD's Content-Length is the upstream's (the resource
// with our reference, not the inflated answer a GET gets). The raw paths put `content.cacheControl`
// on their 304 for the reason docs give (RFC 9110 §15.4.5: a 304 updates the stored response's
// headers; a HEAD may freshen it, RFC 9111 §4.3.5). The 304 here comes from the upstream on
// If-None-Match, as HAPI answers.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, relay } from '../helpers/lifecycle.js';

t.test('HEAD and 304 of an inflated read say what its 200 says about caching and length', async (t) => {
  const s = await stack(t, {}, (up) =>
    relay(t, up.url, (req, res) => {
      // HAPI: a read with a matching If-None-Match is answered 304.
      if (req.method === 'GET' && req.headers['if-none-match'] === 'W/"1"' && /\/DocumentReference\/[^/?]+$/.test(req.url ?? '')) {
        res.writeHead(304, { etag: 'W/"1"', 'last-modified': new Date().toUTCString() });
        res.end();
        return 'answered';
      }
      return undefined;
    }),
  );
  const { id } = await createDocument(s, {}, t);
  const url = `${s.gw.base}/DocumentReference/${id}`;
  const get = await fetch(url, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  const body = await get.arrayBuffer();
  t.equal(get.status, 200);
  t.equal(get.headers.get('cache-control'), 'no-store', 'control: the inflated 200 is no-store');
  t.equal(get.headers.get('etag'), 'W/"1"');

  const head = await fetch(url, { method: 'HEAD', headers: { ...s.auth, accept: 'application/fhir+json' } });
  t.comment(
    `HEAD: cache-control ${head.headers.get('cache-control')}, content-length ${head.headers.get('content-length')} (GET sent ${body.byteLength})`,
  );
  t.equal(head.headers.get('cache-control'), 'no-store', 'HEAD: the same Cache-Control as the GET');
  const len = head.headers.get('content-length');
  t.ok(len === null || Number(len) === body.byteLength, 'HEAD: no Content-Length other than what a GET sends');

  const revalidate = await fetch(url, { headers: { ...s.auth, accept: 'application/fhir+json', 'if-none-match': 'W/"1"' } });
  await revalidate.arrayBuffer();
  t.equal(revalidate.status, 304, 'the upstream answered 304');
  t.equal(revalidate.headers.get('cache-control'), 'no-store', '304: carries the Cache-Control of the content');
});

// The rest of the class: every bodiless answer the rewrite owns (a search's HEAD, a history's HEAD).
t.test('HEAD of a rewritten search or history: the Cache-Control of its GET, no upstream Content-Length', async (t) => {
  const s = await stack(t);
  const { id } = await createDocument(s, {}, t);
  for (const path of [`DocumentReference?_id=${id}`, `DocumentReference/${id}/_history`]) {
    const get = await fetch(`${s.gw.base}/${path}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
    const body = await get.arrayBuffer();
    t.equal(get.status, 200);
    t.equal(get.headers.get('cache-control'), 'no-store', `${path}: control: its GET is no-store`);
    const head = await fetch(`${s.gw.base}/${path}`, { method: 'HEAD', headers: { ...s.auth, accept: 'application/fhir+json' } });
    t.equal(head.headers.get('cache-control'), 'no-store', `${path}: HEAD`);
    const len = head.headers.get('content-length');
    t.ok(len === null || Number(len) === body.byteLength, `${path}: HEAD: no Content-Length other than what a GET sends`);
  }
});
