// FINDING: a Binary written as a batch/transaction entry (POST, PUT, PATCH) reaches the upstream
// as the client sent it: no allow-list, no sniffing, no securityContext check, no blob-reference
// check. `POST /Binary` with the same resource is refused (415) by the binary plane, and
// `PATCH /Binary/{id}` is refused outright (405) for exactly this reason.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle, direct, locationId, outcomeCodeOf, outcome, type Bundle } from './helpers.js';

/** Binary entries are refused in any Bundle: the binary plane's checks cannot run there. */
const REFUSED = [400, 'BAD_BUNDLE'];

const html = Buffer.from('<html><script>alert(document.domain)</script></html>');

t.test('transaction POST Binary with inline text/html data', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const outside = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Binary', contentType: 'text/html', data: html.toString('base64') }),
  });
  t.same(await outcome(outside), [415, 'UNSUPPORTED_MEDIA'], 'the same Binary sent alone is refused');

  const r = await bundle(
    s,
    s.auth,
    [
      {
        request: { method: 'POST', url: 'Binary' },
        resource: { resourceType: 'Binary', contentType: 'text/html', data: html.toString('base64') },
      },
    ],
    'transaction',
  );
  const text = await r.text();
  t.same([r.status, outcomeCodeOf(text)], REFUSED, 'the transaction is refused');
  const id = locationId(JSON.parse(text) as Bundle);
  t.equal(id, undefined, 'no Binary is created past the content check');
  if (id) {
    const served = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
    t.notOk(Buffer.from(await served.arrayBuffer()).equals(html), 'and the plane does not serve it');
  }
});

t.test('transaction PUT Binary declared application/pdf, content an executable', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const exe = Buffer.concat([Buffer.from('MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff', 'latin1'), Buffer.alloc(200, 1)]);
  const r = await bundle(
    s,
    s.auth,
    [
      {
        request: { method: 'PUT', url: 'Binary/evil' },
        resource: { resourceType: 'Binary', id: 'evil', contentType: 'application/pdf', data: exe.toString('base64') },
      },
    ],
    'transaction',
  );
  t.same(await outcome(r), REFUSED, 'the transaction is refused');
  const served = await fetch(`${s.gw.base}/Binary/evil`, { headers: s.auth });
  const bytes = Buffer.from(await served.arrayBuffer());
  t.notOk(served.status === 200 && bytes.equals(exe), 'an executable is not served as application/pdf');
});

t.test('transaction PATCH Binary sets data past every check', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const id = await direct(s, { resourceType: 'Binary', contentType: 'application/pdf', data: PDF(100).toString('base64') });
  const patch = [
    { op: 'replace', path: '/data', value: html.toString('base64') },
    { op: 'replace', path: '/contentType', value: 'text/html' },
  ];
  const r = await bundle(
    s,
    s.auth,
    [
      {
        request: { method: 'PATCH', url: `Binary/${id}` },
        resource: {
          resourceType: 'Binary',
          contentType: 'application/json-patch+json',
          data: Buffer.from(JSON.stringify(patch)).toString('base64'),
        },
      },
    ],
    'transaction',
  );
  t.same(await outcome(r), REFUSED, 'the transaction is refused');
  const held = (await (await fetch(`${s.up.url}/Binary/${id}`, { headers: { accept: 'application/fhir+json' } })).json()) as {
    contentType?: string;
  };
  t.not(held.contentType, 'text/html', 'the patch did not reach the upstream');
});
