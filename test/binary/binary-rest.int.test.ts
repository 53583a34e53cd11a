// Binary over REST through the running gateway, against Medplum's FHIR router and the filesystem store.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { binaryPosts, code, PDF, PNG, sha256, stack, upload, upstreamBinary } from '../helpers/binary-stack.js';
import { startTestGateway } from '../helpers/gateway.js';
import { eventually, settled } from '../helpers/poll.js';
import { httpMessage, portOf, rawRequest } from '../helpers/raw-http.js';

t.test('POST raw content: stored, the upstream holds a reference, the client reads the same bytes back', async (t) => {
  const s = await stack(t);
  const pdf = PDF(300_000);
  const created = await upload(s, pdf, 'application/pdf', { 'x-security-context': 'Patient/123' });
  t.equal(created.status, 201);
  const location = created.headers.get('location') ?? '';
  t.match(location, /^http:\/\/gateway\.test\/fhir\/Binary\/[A-Za-z0-9-]+\/_history\/1$/, 'Location through the gateway');
  const id = location.split('/')[5];

  const held = await upstreamBinary(s, id);
  t.equal(held.data, undefined, 'the upstream holds no data');
  t.match(held, { resourceType: 'Binary', contentType: 'application/pdf', securityContext: { reference: 'Patient/123' } });
  t.match(JSON.stringify(held._data), new RegExp(sha256(pdf)), 'the reference carries the sha256');
  const files = s.gw.blobFiles();
  t.equal(files.filter((f) => f.endsWith('.blob')).length, 1, 'one blob stored');
  const meta = JSON.parse(
    await (await import('node:fs/promises')).readFile(`${s.gw.blobDir}/${files.find((f) => f.endsWith('.json'))}`, 'utf8'),
  ) as Record<string, unknown>;
  t.match(
    meta,
    { state: 'linked', owner: `Binary/${id}`, size: pdf.length, contentType: 'application/pdf' },
    'linked to its owner once the upstream accepted it',
  );

  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(raw.status, 200);
  t.equal(raw.headers.get('content-type'), 'application/pdf');
  t.equal(raw.headers.get('content-length'), String(pdf.length));
  t.equal(raw.headers.get('etag'), 'W/"1"');
  t.ok(raw.headers.get('last-modified'), 'Last-Modified');
  t.equal(raw.headers.get('x-security-context'), 'Patient/123');
  t.equal(raw.headers.get('x-content-type-options'), 'nosniff');
  t.equal(raw.headers.get('accept-ranges'), 'bytes');
  t.equal(raw.headers.get('content-disposition'), null, 'a PDF is not forced to download');
  t.equal(sha256(Buffer.from(await raw.arrayBuffer())), sha256(pdf), 'byte-identical');

  const fhir = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  t.equal(fhir.status, 200);
  t.match(fhir.headers.get('content-type'), /^application\/fhir\+json/);
  const asFhir = (await fhir.json()) as Record<string, unknown>;
  t.match(asFhir, { resourceType: 'Binary', id, contentType: 'application/pdf', securityContext: { reference: 'Patient/123' } });
  t.equal(asFhir._data, undefined, 'the internal reference is not shown');
  t.ok(Buffer.from(asFhir.data as string, 'base64').equals(pdf), 'FHIR view carries the content as base64');
  const viaFormat = await fetch(`${s.gw.base}/Binary/${id}?_format=json`, { headers: s.auth });
  t.match(viaFormat.headers.get('content-type'), /^application\/fhir\+json/, '_format=json asks for the resource');
  await viaFormat.arrayBuffer();
  const genericJson = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/json' } });
  t.match(genericJson.headers.get('content-type'), /^application\/fhir\+json/, 'generic JSON on non-JSON content means the resource');
  await genericJson.arrayBuffer();
});

t.test('HEAD, Range (206, suffix, 416) and If-None-Match (304) on a raw read', async (t) => {
  const s = await stack(t);
  const pdf = PDF(100_000);
  const id = ((await upload(s, pdf, 'application/pdf')).headers.get('location') ?? '').split('/')[5];

  const head = await fetch(`${s.gw.base}/Binary/${id}`, { method: 'HEAD', headers: s.auth });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-length'), String(pdf.length));
  t.equal((await head.arrayBuffer()).byteLength, 0);

  const part = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=1000-1999' } });
  t.equal(part.status, 206);
  t.equal(part.headers.get('content-range'), `bytes 1000-1999/${pdf.length}`);
  t.ok(Buffer.from(await part.arrayBuffer()).equals(pdf.subarray(1000, 2000)));
  const suffix = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=-10' } });
  t.equal(suffix.status, 206);
  t.ok(Buffer.from(await suffix.arrayBuffer()).equals(pdf.subarray(pdf.length - 10)));
  const beyond = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: `bytes=${pdf.length}-` } });
  t.equal(beyond.status, 416);
  t.equal(beyond.headers.get('content-range'), `bytes */${pdf.length}`);
  t.equal(await code(beyond), 'RANGE_NOT_SATISFIABLE');

  const cached = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, 'if-none-match': 'W/"1"' } });
  t.equal(cached.status, 304);
  t.equal(cached.headers.get('etag'), 'W/"1"');
  const stale = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, 'if-none-match': 'W/"0"' } });
  t.equal(stale.status, 200);
  await stale.arrayBuffer();
});

t.test('PUT makes a new version; _history reads each version’s own content', async (t) => {
  const s = await stack(t);
  const v1 = PDF(5000);
  const v2 = PDF(7000);
  const id = ((await upload(s, v1, 'application/pdf')).headers.get('location') ?? '').split('/')[5];
  const put = await upload(s, v2, 'application/pdf', {}, 'PUT', `/Binary/${id}`);
  t.equal(put.status, 200);
  await put.arrayBuffer();
  t.ok(Buffer.from(await (await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth })).arrayBuffer()).equals(v2), 'current is v2');
  const old = await fetch(`${s.gw.base}/Binary/${id}/_history/1`, { headers: s.auth });
  t.equal(old.headers.get('etag'), 'W/"1"');
  t.ok(Buffer.from(await old.arrayBuffer()).equals(v1), 'version 1 still reads v1');
});

t.test('content checks: a mismatch, a type not allowed, bad text → 415 and nothing stored or sent upstream', async (t) => {
  const s = await stack(t, { content: { allowedTypes: { Binary: ['application/pdf', 'image/png', 'text/plain'] } } });
  const cases: [string, Buffer, string, RegExp][] = [
    ['PNG bytes declared as PDF', PNG, 'application/pdf', /image\/png, declared as application\/pdf/],
    ['PDF bytes declared as PNG', PDF(100), 'image/png', /application\/pdf, declared as image\/png/],
    ['unrecognisable bytes declared as PDF', randomBytes(10_000), 'application/pdf', /does not look like application\/pdf/],
    ['a type not on the allow-list', Buffer.from('PK\x03\x04zip'), 'application/zip', /application\/zip is not allowed for Binary/],
    ['invalid UTF-8 as text', Buffer.concat([Buffer.from('hello '), Buffer.from([0xc3, 0x28])]), 'text/plain', /not valid UTF-8/],
    ['NUL in text', Buffer.from('hello\0world'), 'text/plain', /NUL/],
    ['XML declared as text (sniffed)', Buffer.from('<?xml version="1.0"?><x/>'), 'text/plain', /declared as text\/plain/],
    ['no Content-Type at all', PDF(10), '', /Content-Type is required/],
  ];
  for (const [name, body, type, why] of cases) {
    const r = await fetch(`${s.gw.base}/Binary`, {
      method: 'POST',
      headers: { ...s.auth, ...(type ? { 'content-type': type } : {}) },
      body,
    });
    t.equal(r.status, 415, name);
    const o = (await r.json()) as { issue: { diagnostics?: string; details: { coding: { code: string }[] } }[] };
    t.equal(o.issue[0].details.coding[0].code, 'UNSUPPORTED_MEDIA', `${name}: code`);
    t.match(JSON.stringify(o), why, `${name}: says why`);
  }
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  t.equal(binaryPosts(s), 0, 'the upstream never saw a Binary');
  const ok = await upload(s, Buffer.from('plain text, valid UTF-8: é'), 'text/plain; charset=utf-8');
  t.equal(ok.status, 201, 'valid text is accepted');
});

t.test(
  'limits: 413 past the rule’s maximum (declared or streamed), nothing stored; Expect: 100-continue answered before the body',
  async (t) => {
    const s = await stack(t, {
      rules: [{ name: 'small-binaries', match: { resourceTypes: ['Binary'] }, limits: { maxRequestBytes: 50_000 } }],
    });
    const declared = await upload(s, PDF(60_000), 'application/pdf');
    t.equal(declared.status, 413);
    t.equal(await code(declared), 'PAYLOAD_TOO_LARGE');
    // Chunked: no length to refuse up front, so the count stops it midway.
    const big = PDF(200_000);
    const streamed = await fetch(`${s.gw.base}/Binary`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/pdf' },
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < big.length; i += 16_384) c.enqueue(big.subarray(i, i + 16_384));
          c.close();
        },
      }),
      duplex: 'half',
    });
    t.equal(streamed.status, 413);
    t.same(s.gw.blobFiles(), [], 'no partial blob, no temp file');
    t.equal(binaryPosts(s), 0);

    const port = portOf(s.gw.url);
    const r = await rawRequest(
      port,
      httpMessage([
        'POST /fhir/Binary HTTP/1.1',
        'Host: x',
        `Authorization: ${s.auth.authorization}`,
        'Content-Type: application/pdf',
        'Content-Length: 60000',
        'Expect: 100-continue',
      ]),
    );
    t.equal(r.statusCode, 413, '413 to Expect: 100-continue');
    t.same(r.interim, [], 'no 100 Continue was sent');
    const r2 = await rawRequest(
      port,
      httpMessage([
        'POST /fhir/Binary HTTP/1.1',
        'Host: x',
        `Authorization: ${s.auth.authorization}`,
        'Content-Type: application/zip',
        'Content-Length: 10',
        'Expect: 100-continue',
      ]),
    );
    t.equal(r2.statusCode, 415, 'a refused type is answered before the body too');
    t.same(r2.interim, []);
  },
);

t.test('the upstream refusing or unreachable: the blob is removed', async (t) => {
  const s = await stack(t);
  // An update with a stale If-Match is refused by the upstream after the content was stored.
  const id = ((await upload(s, PDF(1000), 'application/pdf')).headers.get('location') ?? '').split('/')[5];
  const before = s.gw.blobFiles();
  const stale = await upload(s, PDF(2000), 'application/pdf', { 'if-match': 'W/"7"' }, 'PUT', `/Binary/${id}`);
  t.ok(stale.status >= 400 && stale.status < 500, `upstream refused (${stale.status})`);
  await stale.arrayBuffer();
  t.same(s.gw.blobFiles(), before, 'the refused blob is gone');

  const key = await makeKey('k2');
  const jwks = await startJwksServer(t, [key]);
  const down = await startTestGateway(t, { upstream: 'http://127.0.0.1:9/fhir', jwksUri: jwks.url });
  const token = await mintToken(key, { claims: { scope: 'user/*.cruds' } });
  const r = await fetch(`${down.base}/Binary`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/pdf' },
    body: PDF(5000),
  });
  t.equal(r.status, 502);
  t.equal(await code(r), 'UPSTREAM_UNAVAILABLE');
  t.same(down.blobFiles(), [], 'nothing kept when the upstream could not be told');
});

t.test('a client that disconnects midway leaves nothing behind', async (t) => {
  const s = await stack(t);
  const port = portOf(s.gw.url);
  const { connect } = await import('node:net');
  const sock = connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write(
    httpMessage([
      'POST /fhir/Binary HTTP/1.1',
      'Host: x',
      `Authorization: ${s.auth.authorization}`,
      'Content-Type: application/pdf',
      'Content-Length: 1000000',
    ]),
  );
  sock.write(PDF(200_000));
  t.ok(
    await eventually(() => s.gw.blobFiles().some((f) => f.endsWith('.tmp')), 'a temp file in the store').catch(() => false),
    'the upload was in progress',
  );
  sock.destroy();
  t.same(await settled(() => s.gw.blobFiles(), []), [], 'temp file removed');
  t.equal(binaryPosts(s), 0);
  // Logged as what it was: 499 and aborted, never the 200 a response nobody got defaults to.
  const line = await eventually(
    () => s.gw.logs.lines.find((l) => l['msg'] === 'request' && l['interaction'] === 'create'),
    'the access line of the aborted upload',
  );
  t.match(line, { status: 499, aborted: true, resourceType: 'Binary' });
  t.notOk('statusSent' in line, 'no head went out');
});

t.test('Binaries the upstream already holds inline still read through the gateway', async (t) => {
  const s = await stack(t);
  const content = PDF(2000);
  const r = await fetch(`${s.up.url}/Binary`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: content.toString('base64') }),
  });
  const id = ((await r.json()) as { id: string }).id;
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(raw.status, 200);
  t.equal(raw.headers.get('content-type'), 'application/pdf');
  t.ok(Buffer.from(await raw.arrayBuffer()).equals(content));
  const part = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=0-3' } });
  t.equal(await part.text(), '%PDF');
  const missing = await fetch(`${s.gw.base}/Binary/does-not-exist`, { headers: s.auth });
  t.equal(missing.status, 404, "the upstream's 404 is relayed");
  await missing.arrayBuffer();
});

t.test('active content is always a download, sandboxed, never sniffed', async (t) => {
  const s = await stack(t, { content: { allowedTypes: { Binary: ['text/html'] } } });
  const id = ((await upload(s, Buffer.from('<html><script>alert(1)</script></html>'), 'text/html')).headers.get('location') ?? '').split(
    '/',
  )[5];
  const r = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(r.headers.get('content-type'), 'text/html');
  t.equal(r.headers.get('content-disposition'), 'attachment');
  t.equal(r.headers.get('x-content-type-options'), 'nosniff');
  t.match(r.headers.get('content-security-policy'), /sandbox/);
  await r.arrayBuffer();
});

t.test('a blob whose hash differs from the reference is never served', async (t) => {
  const s = await stack(t);
  const id = ((await upload(s, PDF(1000), 'application/pdf')).headers.get('location') ?? '').split('/')[5];
  // Point the upstream's Binary at a different blob (as a client writing around the gateway could).
  const other = ((await upload(s, PDF(1000), 'application/pdf')).headers.get('location') ?? '').split('/')[5];
  const a = await upstreamBinary(s, id);
  const b = await upstreamBinary(s, other);
  const swapped = {
    ...a,
    _data: {
      extension: [
        {
          ...(b._data as { extension: { extension: unknown[] }[] }).extension[0],
          extension: [
            (b._data as { extension: { extension: unknown[] }[] }).extension[0].extension[0],
            (a._data as { extension: { extension: unknown[] }[] }).extension[0].extension[1],
          ],
        },
      ],
    },
  };
  await (
    await fetch(`${s.up.url}/Binary/${id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify(swapped),
    })
  ).arrayBuffer();
  const r = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(r.status, 500);
  t.equal(await code(r), 'BLOB_UNREADABLE');
});

t.test('a conditional raw Binary write is refused, never passed on unchecked', async (t) => {
  const s = await stack(t);
  const r = await upload(s, PNG, 'application/pdf', { 'if-none-exist': 'identifier=x' });
  t.equal(r.status, 405);
  t.equal(await code(r), 'METHOD_NOT_ALLOWED');
  const q = await upload(s, PNG, 'application/pdf', {}, 'PUT', '/Binary?identifier=x');
  t.equal(q.status, 405, 'conditional update too');
  await q.arrayBuffer();
  t.same(s.gw.blobFiles(), []);
  t.equal(binaryPosts(s), 0, 'the upstream never saw the bytes');
});

t.test('a FHIR JSON Binary body: its data is externalized and checked like raw content', async (t) => {
  const s = await stack(t);
  const pdf = PDF(400_000);
  const body = JSON.stringify({
    resourceType: 'Binary',
    contentType: 'application/pdf',
    securityContext: { reference: 'Patient/7' },
    data: pdf.toString('base64'),
  });
  const created = await upload(s, Buffer.from(body), 'application/fhir+json');
  t.equal(created.status, 201);
  const id = (created.headers.get('location') ?? '').split('/')[5];
  await created.arrayBuffer();
  const held = await upstreamBinary(s, id);
  t.equal(held.data, undefined, 'the upstream holds no data');
  t.match(held, { contentType: 'application/pdf', securityContext: { reference: 'Patient/7' } });
  t.match(JSON.stringify(held._data), new RegExp(sha256(pdf)));
  const meta = s.gw.blobFiles().filter((f) => f.endsWith('.json'));
  t.equal(meta.length, 1);
  const record = JSON.parse(await (await import('node:fs/promises')).readFile(`${s.gw.blobDir}/${meta[0]}`, 'utf8')) as Record<
    string,
    unknown
  >;
  t.match(record, { state: 'linked', owner: `Binary/${id}`, contentType: 'application/pdf', size: pdf.length });
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
  t.equal(sha256(Buffer.from(await raw.arrayBuffer())), sha256(pdf), 'raw read gives the bytes back');

  const v2 = PDF(1000);
  const put = await upload(
    s,
    Buffer.from(JSON.stringify({ resourceType: 'Binary', id, contentType: 'application/pdf', data: v2.toString('base64') })),
    'application/fhir+json',
    {},
    'PUT',
    `/Binary/${id}`,
  );
  t.equal(put.status, 200);
  await put.arrayBuffer();
  t.ok(
    Buffer.from(await (await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth })).arrayBuffer()).equals(v2),
    'update through the FHIR body',
  );
});

t.test('a FHIR JSON Binary body that fails a check: refused, nothing stored, nothing sent upstream', async (t) => {
  const s = await stack(t);
  const before = binaryPosts(s);
  const cases: [string, string, string, number, string][] = [
    [
      'PNG declared as PDF',
      'application/fhir+json',
      JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: PNG.toString('base64') }),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    [
      'type not allowed',
      'application/fhir+json',
      JSON.stringify({ resourceType: 'Binary', contentType: 'application/zip', data: PDF(10).toString('base64') }),
      415,
      'UNSUPPORTED_MEDIA',
    ],
    [
      'not base64',
      'application/fhir+json',
      JSON.stringify({ resourceType: 'Binary', contentType: 'application/pdf', data: '%%%%' }),
      400,
      'BAD_REQUEST',
    ],
    [
      'not a Binary',
      'application/fhir+json',
      JSON.stringify({
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', data: PDF(3000).toString('base64') } }],
      }),
      400,
      'BAD_REQUEST',
    ],
    [
      'malformed JSON',
      'application/fhir+json',
      '{"resourceType":"Binary","contentType":"application/pdf","data":"JVBE',
      400,
      'BAD_REQUEST',
    ],
    [
      'a reference written by the client',
      'application/fhir+json',
      JSON.stringify({
        resourceType: 'Binary',
        contentType: 'application/pdf',
        _data: { extension: [{ url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference', extension: [] }] },
      }),
      400,
      'BAD_REQUEST',
    ],
    [
      'FHIR XML',
      'application/fhir+xml',
      '<Binary xmlns="http://hl7.org/fhir"><contentType value="application/pdf"/><data value="JVBERi0="/></Binary>',
      415,
      'UNSUPPORTED_MEDIA',
    ],
  ];
  for (const [name, type, body, status, expected] of cases) {
    const r = await upload(s, Buffer.from(body), type);
    t.equal(r.status, status, name);
    t.equal(await code(r), expected, `${name}: ${expected}`);
    t.same(s.gw.blobFiles(), [], `${name}: nothing stored`);
  }
  t.equal(binaryPosts(s), before, 'the upstream never saw any of them');
  t.same(s.gw.spoolFiles(), [], 'no spool file left behind');
});

t.test('PATCH of Binary is refused: it could set data past every check', async (t) => {
  const s = await stack(t);
  const id = ((await upload(s, PDF(1000), 'application/pdf')).headers.get('location') ?? '').split('/')[5];
  const r = await fetch(`${s.gw.base}/Binary/${id}`, {
    method: 'PATCH',
    headers: { ...s.auth, 'content-type': 'application/json-patch+json' },
    body: JSON.stringify([{ op: 'add', path: '/data', value: 'PHNjcmlwdD4=' }]),
  });
  t.equal(r.status, 405);
  t.equal(await code(r), 'METHOD_NOT_ALLOWED');
  t.equal((await upstreamBinary(s, id)).data, undefined, 'the upstream Binary is unchanged');
});

t.test('a Binary held inline above 1 MiB is streamed, not buffered, and its securityContext still checked', async (t) => {
  const s = await stack(t);
  const content = PDF(3_000_000);
  const pid = (
    (await (
      await fetch(`${s.up.url}/Patient`, {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: '{"resourceType":"Patient"}',
      })
    ).json()) as { id: string }
  ).id;
  const r = await fetch(`${s.up.url}/Binary`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Binary',
      contentType: 'application/pdf',
      securityContext: { reference: `Patient/${pid}` },
      data: content.toString('base64'),
    }),
  });
  const id = ((await r.json()) as { id: string }).id;
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(raw.status, 200);
  t.equal(raw.headers.get('content-length'), String(content.length));
  t.equal(raw.headers.get('x-security-context'), `Patient/${pid}`);
  t.equal(sha256(Buffer.from(await raw.arrayBuffer())), sha256(content), 'raw bytes decoded from the upstream stream');
  const part = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: 'bytes=2999990-' } });
  t.equal(part.status, 206);
  t.ok(Buffer.from(await part.arrayBuffer()).equals(content.subarray(2_999_990)), 'Range over the spooled content');
  const fhir = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
  const asFhir = (await fhir.json()) as Record<string, unknown>;
  t.match(asFhir, { resourceType: 'Binary', id, contentType: 'application/pdf', securityContext: { reference: `Patient/${pid}` } });
  t.ok(Buffer.from(asFhir.data as string, 'base64').equals(content), 'FHIR view re-encoded from the spool');
  const binaryOnly = await fetch(`${s.gw.base}/Binary/${id}`, { headers: await s.as('user/Binary.r') });
  t.equal(binaryOnly.status, 403, 'securityContext enforced on large inline Binaries too');
  t.equal(await code(binaryOnly), 'INSUFFICIENT_SCOPE');
  // Removed when each exchange closes, which may be after the client has its answer.
  t.same(await settled(() => s.gw.spoolFiles(), []), [], 'every spool file removed');
});

t.test('every security refusal of an upload (401, 403 transport/IP/scope) stores nothing and sends nothing upstream', async (t) => {
  const s = await stack(t, {
    rules: [
      { name: 'https-binary', match: { resourceTypes: ['Binary'], interactions: ['update'] }, require: { https: true } },
      { name: 'deny-local', match: { resourceTypes: ['Binary'], interactions: ['create'] }, require: { ipDeny: ['127.0.0.0/8'] } },
    ],
  });
  const cases: [string, Promise<Response>, number, string][] = [
    ['HTTPS required', upload(s, PDF(5000), 'application/pdf', {}, 'PUT', '/Binary/x'), 403, 'INSECURE_TRANSPORT'],
    ['client address denied', upload(s, PDF(5000), 'application/pdf'), 403, 'FORBIDDEN'],
  ];
  for (const [name, pending, status, expected] of cases) {
    const r = await pending;
    t.equal(r.status, status, name);
    t.equal(await code(r), expected, `${name}: ${expected}`);
  }
  t.same(s.gw.blobFiles(), [], 'nothing stored');
  t.equal(binaryPosts(s), 0, 'nothing sent upstream');

  const open = await stack(t);
  const stranger = { authorization: `Bearer ${await mintToken(await makeKey('k2'), { claims: { scope: 'user/*.cruds' } })}` };
  for (const [name, headers, expected] of [
    ['no token', {}, 'TOKEN_MISSING'],
    ['a token signed by an unknown key', stranger, 'INVALID_TOKEN'],
  ] as const) {
    const r = await fetch(`${open.gw.base}/Binary`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/pdf' },
      body: PDF(5000),
    });
    t.equal(r.status, 401, name);
    t.equal(await code(r), expected, `${name}: ${expected}`);
  }
  const readOnly = await open.as('user/Binary.r');
  for (const [method, path] of [
    ['POST', '/Binary'],
    ['PUT', '/Binary/x'],
  ] as const) {
    const r = await upload(open, PDF(5000), 'application/pdf', readOnly, method, path);
    t.equal(r.status, 403, `${method} with a read-only scope`);
    t.equal(await code(r), 'INSUFFICIENT_SCOPE');
  }
  t.same(open.gw.blobFiles(), [], 'nothing stored');
  t.equal(binaryPosts(open), 0, 'nothing sent upstream');
});
