// Signed file URLs through the running gateway, against Medplum's FHIR router: issued by
// `$file-url` under the caller's token, followed with no token at all.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { GatewayConfig } from '../../src/config/types.js';
import { UrlSigner } from '../../src/signed/signer.js';
import { signature, signedQuery, SIGNED_VERSION, type SignedFields } from '../../src/signed/signature.js';
import { code, PDF, sha256, stack, type Stack } from '../helpers/binary-stack.js';
import { urlKeys } from '../helpers/signed-urls.js';
import { eventually } from '../helpers/poll.js';

async function signedStack(t: Test, extra: Record<string, unknown> = {}) {
  const k = urlKeys(t);
  const s = await stack(t, {
    signedUrls: {
      enabled: true,
      keys: [{ id: 'k1', file: k.file('k1') }],
      activeKey: 'k1',
      policies: [
        { id: 'downloads', permissions: 'r', maxWindow: '30m' },
        { id: 'uploads', permissions: 'rw', maxWindow: '30m' },
      ],
      defaultPolicy: 'downloads',
      ...extra,
    },
  });
  return { s, k };
}

/** A PDF Binary through the gateway: its id and content. */
async function pdfBinary(s: Stack, size = 70_000): Promise<{ id: string; pdf: Buffer }> {
  const pdf = PDF(size);
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/pdf' }, body: pdf });
  t.equal(r.status, 201);
  await r.arrayBuffer();
  return { id: (r.headers.get('location') ?? '').split('/')[5], pdf };
}

interface Issued {
  url: string;
  expiresAt: string;
  startsAt: string;
  policy?: string;
  keyId: string;
}

/** `$file-url` as the stack's caller; the URL moved from the public base to the test listener. */
async function issue(s: Stack, path: string, auth = s.auth): Promise<Issued> {
  const r = await fetch(`${s.gw.base}/${path}`, { headers: auth });
  if (r.status !== 200) throw new Error(`$file-url: ${r.status} ${await r.text()}`);
  t.equal(r.headers.get('cache-control'), 'no-store', 'the answer holds a credential: never cached');
  const p = (await r.json()) as { parameter: { name: string; valueUrl?: string; valueInstant?: string; valueString?: string }[] };
  const get = (n: string) => p.parameter.find((x) => x.name === n);
  return {
    url: get('url')!.valueUrl!.replace('http://gateway.test', s.gw.url),
    expiresAt: get('expiresAt')!.valueInstant!,
    startsAt: get('startsAt')!.valueInstant!,
    ...(get('policy') ? { policy: get('policy')!.valueString! } : {}),
    keyId: get('keyId')!.valueString!,
  };
}

/** A URL signed in the test with the gateway's key: fields the gateway would never issue (past windows, other permissions). */
function forge(s: Stack, secret: Buffer, over: Partial<SignedFields> & { path: string }): string {
  const now = Date.now();
  const t = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const f: SignedFields = {
    sv: SIGNED_VERSION,
    sr: 'b',
    sp: 'r',
    st: t(now - 60_000),
    se: t(now + 600_000),
    spr: 'https,http',
    si: 'downloads',
    skid: 'k1',
    // A read URL's content hash: a made-up one, so a forged URL that verified would still serve nothing.
    ...(over.sp === 'w' ? {} : { shash: 'A'.repeat(43) }),
    ...over,
  };
  return `${s.gw.base}/${f.path}?${signedQuery(f, signature(f, secret))}`;
}

/** A FHIR JSON write through the gateway as the stack's caller. */
const sendJson = (s: Stack, method: string, path: string, body: unknown, auth = s.auth) =>
  fetch(`${s.gw.base}/${path}`, { method, headers: { ...auth, 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) });

/** A DocumentReference whose one attachment holds `pdf` (stored: over externalize.minBytes); its id. */
async function pdfDocument(s: Stack, pdf: Buffer): Promise<string> {
  const c = await sendJson(s, 'POST', 'DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
  });
  if (c.status !== 201) throw new Error(`create: ${c.status} ${await c.text()}`);
  return ((await c.json()) as { id: string }).id;
}

/** What the FHIR server itself holds for `path`, as text (read around the gateway). */
const heldText = async (s: Stack, path: string) =>
  (await fetch(`${s.up.url}/${path}`, { headers: { accept: 'application/fhir+json' } })).text();

/** The content of an attachment, read back with the stack's token. */
const readBack = async (s: Stack, path: string) =>
  Buffer.from(
    await (
      await fetch(`${s.gw.base}/${path}/$binary-access-read?path=DocumentReference.content[0].attachment`, { headers: s.auth })
    ).arrayBuffer(),
  );

const pathOf = (url: string) => new URL(url).pathname.replace(/^\/fhir\//, '');

t.test(
  'issue → follow with no token → the identical bytes; headers pin type, disposition and a private cache for the window',
  async (t) => {
    const { s } = await signedStack(t);
    const { id, pdf } = await pdfBinary(s);
    const got = await issue(s, `Binary/${id}/$file-url?window=10m`);
    t.match(
      got.url,
      /^http:\/\/127\.0\.0\.1:\d+\/fhir\/_file\/Binary\/[A-Za-z0-9.-]+\/[a-z0-9-]+\?sv=2026-12-01&sr=b&sp=r&st=.*&se=.*&spr=https%2Chttp&si=downloads&rsct=application%2Fpdf&rscd=attachment&skid=k1&shash=[A-Za-z0-9_-]{43}&sig=[A-Za-z0-9_-]{43}$/,
    );
    t.equal(got.policy, 'downloads');
    const left = Date.parse(got.expiresAt) - Date.now();
    t.ok(left > 7.4 * 60_000 && left <= 10 * 60_000, `expires within the window asked for, at least ¾ of it (${left} ms)`);
    const r = await fetch(got.url);
    t.equal(r.status, 200);
    const body = Buffer.from(await r.arrayBuffer());
    t.equal(sha256(body), sha256(pdf), 'identical bytes');
    t.equal(r.headers.get('content-type'), 'application/pdf');
    t.equal(r.headers.get('content-disposition'), 'attachment');
    t.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const maxAge = Number(/^private, max-age=(\d+)$/.exec(r.headers.get('cache-control') ?? '')?.[1]);
    t.ok(maxAge > 0 && maxAge * 1000 <= left + 1000, `max-age ${maxAge}s is no longer than what is left of the window`);
    t.equal(r.headers.get('etag'), `"${sha256(pdf)}"`, 'a strong validator: the content hash');
    const again = await fetch(got.url, { headers: { 'if-none-match': r.headers.get('etag')! } });
    t.equal(again.status, 304);
    t.match(again.headers.get('cache-control'), /^private, max-age=\d+$/);
    const head = await fetch(got.url, { method: 'HEAD' });
    t.equal(head.status, 200);
    t.equal(head.headers.get('content-length'), String(pdf.length));

    const line = await s.gw.accessLine(r.headers.get('x-request-id'));
    t.match(line, { interaction: 'operation', operation: 'file', resourceType: 'Binary', id, status: 200 });
    const audit = await eventually(
      () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === r.headers.get('x-request-id')),
      'the audit record of the follow',
    );
    t.match(audit, {
      action: 'execute', // as every operation, $binary-access-read too
      outcome: 'success',
      who: { signedUrl: { keyId: 'k1', policy: 'downloads', url: /^[0-9a-f]{16}$/ } },
      what: { operation: 'file', resourceType: 'Binary', id, blobs: [{ action: 'read', bytes: pdf.length }] },
    });
    t.notOk('sub' in (audit['who'] as object), 'no token: nobody named but the URL');
    const issued = s.gw.logs.lines.find(
      (l) => l['audit'] === 1 && (l['what'] as { operation?: string } | undefined)?.operation === 'file-url',
    );
    const urlName = (audit['who'] as { signedUrl: { url: string } }).signedUrl.url;
    t.match(
      issued,
      {
        what: {
          urls: [
            {
              url: urlName,
              resource: `Binary/${id}`,
              blob: /^[a-z0-9-]+$/,
              permission: 'r',
              expiresAt: got.expiresAt,
              via: 'gateway',
              policy: 'downloads',
            },
          ],
        },
      },
      'issuing is audited (under the token that asked), naming the URL as the follow does',
    );
    const sig = new URL(got.url).searchParams.get('sig')!;
    t.notOk(
      s.gw.logs.raw.some((l) => l.includes(sig) || l.includes('sig=')),
      'the signature appears in no log line',
    );
  },
);

t.test(
  "a URL dies with its content: a FHIR delete of the resource, or new content in its place; the holder's credentials go nowhere",
  async (t) => {
    const { s } = await signedStack(t);
    const { id } = await pdfBinary(s);
    const first = await issue(s, `Binary/${id}/$file-url`);
    const before = s.up.requests.length;
    const ok = await fetch(first.url, { headers: { authorization: 'Bearer not-checked', cookie: 'session=1' } });
    t.equal(ok.status, 200, 'served while the Binary holds it');
    await ok.arrayBuffer();
    const asked = s.up.requests.slice(before);
    t.ok(
      asked.some((r) => r.method === 'GET' && r.url === `/fhir/Binary/${id}`),
      'the current version was asked for',
    );
    t.notOk(
      asked.some((r) => r.headers['authorization'] !== undefined || r.headers['cookie'] !== undefined),
      'no holder credential went upstream',
    );

    const doc = await pdfDocument(s, PDF(80_000));
    const old = await issue(s, `DocumentReference/${doc}/$file-url?path=DocumentReference.content[0].attachment`);
    const put = await sendJson(s, 'PUT', `DocumentReference/${doc}`, {
      resourceType: 'DocumentReference',
      id: doc,
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(81_000).toString('base64') } }],
    });
    t.equal(put.status, 200);
    await put.arrayBuffer();
    t.equal(await code(await fetch(old.url)), 'NOT_FOUND', 'new content in its place: the old URL serves nothing');
    const fresh = await issue(s, `DocumentReference/${doc}/$file-url?path=DocumentReference.content[0].attachment`);
    const now = await fetch(fresh.url);
    t.equal(now.status, 200, 'a URL for the current content works');
    await now.arrayBuffer();

    const del = await fetch(`${s.gw.base}/Binary/${id}`, { method: 'DELETE', headers: s.auth });
    t.ok(del.status === 200 || del.status === 204, `deleted (${del.status})`);
    await del.arrayBuffer();
    t.equal(await code(await fetch(first.url)), 'NOT_FOUND', 'the Binary deleted: its URL serves nothing');
  },
);

t.test('Range through a signed URL', async (t) => {
  const { s } = await signedStack(t);
  const { id, pdf } = await pdfBinary(s);
  const { url } = await issue(s, `Binary/${id}/$file-url`);
  const r = await fetch(url, { headers: { range: 'bytes=100-1123' } });
  t.equal(r.status, 206);
  t.equal(r.headers.get('content-range'), `bytes 100-1123/${pdf.length}`);
  t.same(Buffer.from(await r.arrayBuffer()), pdf.subarray(100, 1124));
  const past = await fetch(url, { headers: { range: `bytes=${pdf.length + 10}-` } });
  t.equal(past.status, 416);
  // A resumed download: If-Range with the strong ETag gets the range, anything else the whole content.
  const etag = `"${sha256(pdf)}"`;
  const resumed = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': etag } });
  t.equal(resumed.status, 206, 'If-Range with the content hash: the range');
  t.same(Buffer.from(await resumed.arrayBuffer()), pdf.subarray(0, 10));
  for (const other of [`W/${etag}`, '"0000"', 'Mon, 07 Dec 2026 00:00:00 GMT']) {
    const whole = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': other } });
    t.equal(whole.status, 200, `If-Range ${other.slice(0, 12)}: the whole content`);
    t.equal((await whole.arrayBuffer()).byteLength, pdf.length);
  }
});

t.test('the same request twice within a bucket gives the same URL (browser caches work)', async (t) => {
  const { s } = await signedStack(t, { bucket: '5m' });
  const { id } = await pdfBinary(s);
  const a = await issue(s, `Binary/${id}/$file-url?window=20m`);
  const b = await issue(s, `Binary/${id}/$file-url?window=20m`);
  // Unless a bucket boundary fell between the two: then a third, at once, equals the second.
  const c = a.url === b.url ? b : await issue(s, `Binary/${id}/$file-url?window=20m`);
  t.equal(c.url, b.url);
  t.equal(Date.parse(b.startsAt) % 300_000, 0, 'start rounded to the bucket');
  const other = await issue(s, `Binary/${id}/$file-url?window=25m`);
  t.not(other.url, b.url, 'another window: another URL');
});

t.test('a window past the policy maximum is cut to it; a policy the gateway does not have is refused', async (t) => {
  const { s } = await signedStack(t);
  const { id } = await pdfBinary(s);
  const got = await issue(s, `Binary/${id}/$file-url?window=6h`);
  t.ok(Date.parse(got.expiresAt) - Date.parse(got.startsAt) <= 30 * 60_000, 'at most the policy maxWindow (30m)');
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?policy=nope`, { headers: s.auth });
  t.equal(r.status, 400);
  const bad = await fetch(`${s.gw.base}/Binary/${id}/$file-url?window=soon`, { headers: s.auth });
  t.equal(bad.status, 400);
  const unknown = await fetch(`${s.gw.base}/Binary/${id}/$file-url?windw=5m`, { headers: s.auth });
  t.equal(unknown.status, 400, 'a misspelt parameter is refused, not ignored');
});

t.test('every refusal of a followed URL is an OperationOutcome with its own code', async (t) => {
  const { s, k } = await signedStack(t);
  const { id } = await pdfBinary(s);
  const { url } = await issue(s, `Binary/${id}/$file-url`);
  const path = pathOf(url);
  const shash = new URL(url).searchParams.get('shash')!;
  const secret = k.secret('k1');
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

  const tampered = url.replace(/se=[^&]+/, `se=${encodeURIComponent(iso(now + 3_600_000))}`);
  let r = await fetch(tampered);
  t.equal(r.status, 403);
  t.equal(await code(r), 'SIGNATURE_INVALID', 'expiry moved: the signature no longer matches');
  r = await fetch(url.replace(/\/Binary\/[^/]+\//, '/Binary/other-id/'));
  t.equal(await code(r), 'SIGNATURE_INVALID', 'another resource in the path');
  r = await fetch(forge(s, randomBytes(32), { shash, path, skid: 'k9' }));
  t.equal(await code(r), 'SIGNATURE_INVALID', 'a key the gateway does not have');
  r = await fetch(`${url}&extra=1`);
  t.equal(await code(r), 'SIGNATURE_INVALID', 'an unknown parameter');
  r = await fetch(url.replace('sp=r', 'sp=r%0A'));
  t.equal(await code(r), 'SIGNATURE_INVALID', 'a control character');
  r = await fetch(forge(s, secret, { shash, path, sp: 'w', si: undefined }));
  t.equal(await code(r), 'SIGNATURE_INVALID', 'a write URL must name an upload slot and its attachment');
  r = await fetch(url.replace(/&sig=.*/, ''));
  t.equal(await code(r), 'SIGNATURE_INVALID', 'no signature');

  r = await fetch(forge(s, secret, { shash, path, st: iso(now - 2_400_000), se: iso(now - 1_200_000) }));
  t.equal(r.status, 403);
  const expired = (await r.json()) as { issue: { details: { text: string; coding: { code: string }[] } }[] };
  t.equal(expired.issue[0].details.coding[0].code, 'SIGNATURE_EXPIRED');
  t.match(expired.issue[0].details.text, /expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/, 'says when, so the client knows to refresh');
  r = await fetch(forge(s, secret, { shash, path, st: iso(now - 2_400_000), se: iso(now + 1_200_000) }));
  t.equal(await code(r), 'SIGNATURE_REVOKED', 'a window longer than the policy allows');
  r = await fetch(forge(s, secret, { shash, path, st: iso(now + 600_000), se: iso(now + 1_200_000) }));
  t.equal(await code(r), 'SIGNATURE_NOT_YET_VALID');
  r = await fetch(forge(s, secret, { shash, path, st: iso(now + 10_000), se: iso(now + 600_000) }));
  t.equal(r.status, 200, 'a start a few seconds ahead (another replica’s clock) is within the leeway');
  await r.arrayBuffer();
  r = await fetch(forge(s, secret, { shash, path, spr: 'https' }));
  t.equal(await code(r), 'INSECURE_TRANSPORT');
  r = await fetch(forge(s, secret, { shash, path, sip: '10.1.2.3' }));
  t.equal(await code(r), 'FORBIDDEN', 'another client address');
  const refused = await eventually(
    () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === r.headers.get('x-request-id')),
    'the audit record of the refused follow',
  );
  t.match(
    refused,
    { outcome: 'refused', code: 'FORBIDDEN', who: { signedUrl: { keyId: 'k1', url: /^[0-9a-f]{16}$/ } } },
    'a refused use of a genuine URL names it (a leaked URL tried elsewhere is traceable)',
  );
  r = await fetch(forge(s, secret, { shash, path, sip: '127.0.0.0-127.0.0.255' }));
  t.equal(r.status, 200, 'an Azure-style range holding the client');
  await r.arrayBuffer();
  r = await fetch(
    forge(s, secret, {
      path: path.replace(/[^/]+$/, 'upload'),
      sp: 'w',
      si: 'uploads',
      spath: 'DocumentReference.content[0].attachment',
      svid: '1',
    }),
  );
  t.equal(await code(r), 'SIGNATURE_PERMISSION', 'a write URL does not read');
  r = await fetch(forge(s, secret, { shash, path, si: 'gone' }));
  t.equal(await code(r), 'SIGNATURE_REVOKED', 'a policy the gateway does not have');
  r = await fetch(url, { method: 'DELETE' });
  t.equal(r.status, 405);
});

t.test('an address asked for at issue binds the URL to it', async (t) => {
  const { s } = await signedStack(t);
  const { id } = await pdfBinary(s);
  const elsewhere = await issue(s, `Binary/${id}/$file-url?ip=10.0.0.0/8`);
  t.equal(await code(await fetch(elsewhere.url)), 'FORBIDDEN');
  const here = await issue(s, `Binary/${id}/$file-url?ip=127.0.0.1`);
  const r = await fetch(here.url);
  t.equal(r.status, 200);
  await r.arrayBuffer();
});

t.test('revoking a policy by reload kills its URLs; a retired key verifies until removed', async (t) => {
  const { s, k } = await signedStack(t);
  const { id, pdf } = await pdfBinary(s);
  const old = await issue(s, `Binary/${id}/$file-url`);
  const cfg = s.gw.settings.current.config;
  const reload = (signedUrls: Partial<GatewayConfig['signedUrls']>) =>
    s.gw.reload({ ...cfg, signedUrls: { ...cfg.signedUrls, ...signedUrls } });

  // Rotation: k2 becomes the active key; k1 (retired) still verifies.
  const k2 = k.file('k2');
  const both = [
    { id: 'k1', file: join(k.dir, 'k1.key') },
    { id: 'k2', file: k2 },
  ];
  reload({ keys: both, activeKey: 'k2' });
  let r = await fetch(old.url);
  t.equal(r.status, 200, 'signed by the retired key: still verifies');
  t.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(pdf));
  const fresh = await issue(s, `Binary/${id}/$file-url`);
  t.equal(fresh.keyId, 'k2');
  t.match(fresh.url, /skid=k2/);
  reload({ keys: [{ id: 'k2', file: k2 }], activeKey: 'k2' });
  t.equal(await code(await fetch(old.url)), 'SIGNATURE_INVALID', 'key removed: its URLs are dead');
  r = await fetch(fresh.url);
  t.equal(r.status, 200);
  await r.arrayBuffer();

  // Revocation: the policy removed.
  reload({ keys: [{ id: 'k2', file: k2 }], activeKey: 'k2', policies: [], defaultPolicy: undefined });
  r = await fetch(fresh.url);
  t.equal(r.status, 403);
  const body = (await r.json()) as { issue: { details: { text: string; coding: { code: string }[] } }[] };
  t.equal(body.issue[0].details.coding[0].code, 'SIGNATURE_REVOKED');
  t.match(body.issue[0].details.text, /policy 'downloads' no longer exists/);
});

t.test('an expired policy (notAfter) revokes; issuing under it is refused', async (t) => {
  const { s } = await signedStack(t, {
    policies: [
      { id: 'downloads', permissions: 'r', maxWindow: '30m' },
      { id: 'ended', permissions: 'r', maxWindow: '30m', notAfter: '2020-01-01T00:00:00Z' },
    ],
  });
  const { id } = await pdfBinary(s);
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?policy=ended`, { headers: s.auth });
  t.equal(await code(r), 'SIGNATURE_REVOKED');
});

t.test('issuing needs the right to read: scopes, and the feature on', async (t) => {
  const { s } = await signedStack(t);
  const { id } = await pdfBinary(s);
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url`, { headers: await s.as('user/Patient.r') });
  t.equal(r.status, 403);
  t.equal(await code(r), 'INSUFFICIENT_SCOPE');
  const anon = await fetch(`${s.gw.base}/Binary/${id}/$file-url`);
  t.equal(anon.status, 401);
  const off = await stack(t);
  const o = await fetch(`${off.gw.base}/Binary/${id}/$file-url`, { headers: off.auth });
  t.equal(o.status, 404, 'signed URLs off: no such operation');
  const follow = await fetch(`${off.gw.base}/_file/Binary/${id}/abc?sv=x`);
  t.equal(follow.status, 404);
});

t.test('an attachment of a DocumentReference: issued by path, followed; content held inline has none', async (t) => {
  const { s } = await signedStack(t);
  const pdf = PDF(100_000); // over externalize.minBytes (64 KiB): stored
  const doc = {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [
      { attachment: { contentType: 'text/plain', data: Buffer.from('small').toString('base64') } },
      { attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } },
    ],
  };
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(doc),
  });
  t.equal(c.status, 201);
  const id = ((await c.json()) as { id: string }).id;
  const got = await issue(
    s,
    `DocumentReference/${id}/$file-url?path=DocumentReference.content[1].attachment&disposition=inline&filename=report.pdf`,
  );
  const r = await fetch(got.url);
  t.equal(r.status, 200);
  t.equal(r.headers.get('content-disposition'), 'inline; filename="report.pdf"');
  t.equal(sha256(Buffer.from(await r.arrayBuffer())), sha256(pdf));
  const inline = await fetch(`${s.gw.base}/DocumentReference/${id}/$file-url?path=DocumentReference.content[0].attachment`, {
    headers: s.auth,
  });
  t.equal(inline.status, 404);
  t.match(await inline.text(), /inline/);
  const bad = await fetch(
    `${s.gw.base}/DocumentReference/${id}/$file-url?path=DocumentReference.content[1].attachment&filename=${encodeURIComponent('a"b')}`,
    {
      headers: s.auth,
    },
  );
  t.equal(bad.status, 400, 'a filename that would need quoting is refused');
  t.match(await bad.text(), /'filename' may hold letters and digits \(any script\)/);
  // A name in another script: an ASCII header, the name itself in RFC 8187's filename*.
  const named = await issue(
    s,
    `DocumentReference/${id}/$file-url?path=DocumentReference.content[1].attachment&filename=${encodeURIComponent('Befund Müller 検査.pdf')}`,
  );
  const n = await fetch(named.url);
  t.equal(n.status, 200);
  t.equal(
    n.headers.get('content-disposition'),
    `attachment; filename="Befund Muller __.pdf"; filename*=UTF-8''Befund%20M%C3%BCller%20%E6%A4%9C%E6%9F%BB.pdf`,
  );
  await n.arrayBuffer();
  const reordering = await fetch(
    `${s.gw.base}/DocumentReference/${id}/$file-url?path=DocumentReference.content[1].attachment&filename=${encodeURIComponent('\u202Efdp.exe')}`,
    { headers: s.auth },
  );
  t.equal(reordering.status, 400, 'a right-to-left override is refused');
  await reordering.arrayBuffer();
});

t.test("a URL names its content through the resource it was issued for: another resource's path reads nothing", async (t) => {
  const { s, k } = await signedStack(t);
  const first = await pdfBinary(s);
  const second = await pdfBinary(s, 50_000);
  const { url } = await issue(s, `Binary/${first.id}/$file-url`);
  const blob = pathOf(url).split('/')[3];
  // Even signed with the gateway's key: the blob was written for the first Binary, not the second.
  const borrowed = forge(s, k.secret('k1'), { path: `_file/Binary/${second.id}/${blob}` });
  const r = await fetch(borrowed);
  t.equal(r.status, 404);
  await r.arrayBuffer();
});

t.test('UrlSigner: a URL signed by one gateway verifies at another with the same key (replicas)', async (t) => {
  const secret = randomBytes(32);
  const cfg = {
    enabled: true,
    keys: [{ id: 'k1', file: 'x' }],
    activeKey: 'k1',
    defaultWindow: '15m',
    maxWindow: '1h',
    bucket: '1m',
    clockSkew: '30s',
    policies: [],
  } as unknown as GatewayConfig['signedUrls'];
  const a = new UrlSigner(cfg, new Map([['k1', secret]]));
  const b = new UrlSigner(cfg, new Map([['k1', Buffer.from(secret)]]));
  const issued = a.issue(
    { type: 'Binary', id: '1', blobId: 'abc', sha256: 'ab'.repeat(32), permissions: 'r', httpAllowed: false },
    Date.parse('2026-12-06T10:00:30Z'),
  );
  t.equal(issued.startsAt.toISOString(), '2026-12-06T10:00:00.000Z');
  t.equal(issued.expiresAt.toISOString(), '2026-12-06T10:15:00.000Z');
  const [path, query] = issued.pathAndQuery.split('?');
  const ip = (await import('../../src/lib/ip.js')).parseAddress('127.0.0.1')!;
  const v = b.verify(path, query, { method: 'GET', clientIp: ip, secure: true }, Date.parse('2026-12-06T10:05:00Z'));
  t.match(v, { type: 'Binary', id: '1', blobId: 'abc', sha256: 'ab'.repeat(32) });
  t.throws(() => b.verify(path, query, { method: 'GET', clientIp: ip, secure: false }, Date.parse('2026-12-06T10:05:00Z')), {
    code: 'INSECURE_TRANSPORT',
  });
  t.throws(() => b.verify(path, query, { method: 'GET', clientIp: ip, secure: true }, Date.parse('2026-12-06T10:15:31Z')), {
    code: 'SIGNATURE_EXPIRED',
  });
  t.doesNotThrow(
    () => b.verify(path, query, { method: 'GET', clientIp: ip, secure: true }, Date.parse('2026-12-06T10:15:20Z')),
    'within the leeway',
  );
  t.throws(
    () => a.issue({ type: 'DocumentReference', id: '1', blobId: '', permissions: 'w', httpAllowed: false, attachmentPath: 'x' }),
    { code: 'BAD_REQUEST', message: /stored policy that grants w/ },
    'no policy: no write URL',
  );
  // A short window: the bucket shrinks to a quarter of it, so the URL lives at least ¾ of what was asked.
  const short = a.issue(
    { type: 'Binary', id: '1', blobId: 'abc', sha256: 'ab'.repeat(32), permissions: 'r', httpAllowed: false, windowMs: 40_000 },
    Date.parse('2026-12-06T10:00:59Z'),
  );
  t.ok(short.expiresAt.getTime() - Date.parse('2026-12-06T10:00:59Z') >= 30_000);
});

t.test(
  'signedUrls.links: links past the budget are signed URLs a browser follows; sent back in an update, the content is taken back and the URL never stored',
  async (t) => {
    const k = urlKeys(t);
    const s = await stack(t, { signedUrls: { enabled: true, keys: [{ id: 'k1', file: k.file('k1') }], activeKey: 'k1', links: true } });
    const pdf = PDF(100_000);
    const id = await pdfDocument(s, pdf);
    const read = await fetch(`${s.gw.base}/DocumentReference/${id}?_inflate=false`, { headers: s.auth });
    const doc = (await read.json()) as {
      content: { attachment: { url: string; _data?: { extension: { url: string; valueUrl?: string }[] } } }[];
    };
    const att = doc.content[0].attachment;
    t.match(
      att.url,
      new RegExp(`^http://gateway\\.test/fhir/_file/DocumentReference/${id}/[a-z0-9-]+\\?sv=`),
      'the url is a signed file URL',
    );
    t.match(
      att._data?.extension,
      [{ valueUrl: /\$binary-access-read\?path=/ }, { valueString: /^[0-9a-f]{64}$/ }],
      'our own link and digest ride in _data',
    );
    const followed = await fetch(att.url.replace('http://gateway.test', s.gw.url));
    t.equal(sha256(Buffer.from(await followed.arrayBuffer())), sha256(pdf), 'followed without a token: the content');
    const granted = await eventually(
      () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === read.headers.get('x-request-id')),
      'the audit record of the read that gave the link',
    );
    const follow = await eventually(
      () => s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === followed.headers.get('x-request-id')),
      'the audit record of the follow',
    );
    t.match(
      granted,
      {
        what: { urls: [{ url: (follow['who'] as { signedUrl: { url: string } }).signedUrl.url, permission: 'r', link: true }] },
      },
      'a link in an answer is a grant on record, under the reader, named as its follow is',
    );

    // Read-modify-update: the resource as it was read goes back.
    const put = await sendJson(s, 'PUT', `DocumentReference/${id}`, doc);
    t.equal(put.status, 200, await put.clone().text());
    await put.arrayBuffer();
    const held = await heldText(s, `DocumentReference/${id}`);
    t.notOk(held.includes('/_file/'), 'no signed URL reached the FHIR server');
    t.equal(sha256(await readBack(s, `DocumentReference/${id}`)), sha256(pdf), 'the content was taken back');

    // New data beside the signed URL: the data is stored, the URL and our stale link dropped.
    const edited = JSON.parse(JSON.stringify(doc)) as { content: { attachment: Record<string, unknown> }[] };
    const fresh = PDF(90_000);
    edited.content[0].attachment['data'] = fresh.toString('base64');
    delete edited.content[0].attachment['size']; // new content: its old size and hash go (the client's part)
    delete edited.content[0].attachment['hash'];
    const withData = await sendJson(s, 'PUT', `DocumentReference/${id}`, edited);
    t.equal(withData.status, 200, await withData.clone().text());
    await withData.arrayBuffer();
    const heldNow = await heldText(s, `DocumentReference/${id}`);
    t.notOk(heldNow.includes('/_file/'), 'data sent beside it: the signed URL is still not stored');
    t.notOk(heldNow.includes('content-url'), 'nor our stale link');
    t.equal(sha256(await readBack(s, `DocumentReference/${id}`)), sha256(fresh), 'the new content');

    // A signed URL with nothing of ours beside it is refused, never stored.
    const bare = await fetch(`${s.gw.base}/DocumentReference`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', url: att.url } }],
      }),
    });
    t.equal(bare.status, 409);
    t.equal(await code(bare), 'CONTENT_LINK_UNRESOLVED');
  },
);

t.test(
  'a signed file URL anywhere else in a written body is refused, however its base is spelled; nothing reaches the FHIR server',
  async (t) => {
    const { s } = await signedStack(t);
    const { id } = await pdfBinary(s);
    const got = await issue(s, `Binary/${id}/$file-url`);
    const u = new URL(got.url);
    const rest = `${u.pathname}${u.search}`; // /fhir/_file/Binary/…?sv=…&sig=…
    const spellings = [
      got.url,
      `HTTP://${u.host.toUpperCase()}${rest}`,
      `http://${u.hostname}:${u.port}${rest}`.replace('127.0.0.1', 'localhost'),
      `https://gateway.other.example${rest}`,
    ];
    const pid = ((await (await sendJson(s, 'POST', 'Patient', { resourceType: 'Patient', active: true })).json()) as { id: string }).id;
    const writesBefore = s.up.requests.filter((r) => r.method !== 'GET').length;
    const refusals: [string, Response][] = [];
    for (const url of spellings) {
      refusals.push(
        [
          `extension valueUrl (${url.slice(0, 24)})`,
          await sendJson(s, 'POST', 'Observation', {
            resourceType: 'Observation',
            status: 'final',
            code: { text: 'x' },
            extension: [{ url: 'http://example.org/link', valueUrl: url }],
          }),
        ],
        [
          `narrative and a note (${url.slice(0, 24)})`,
          await sendJson(s, 'PUT', `Patient/${pid}`, {
            resourceType: 'Patient',
            id: pid,
            text: {
              status: 'generated',
              div: `<div xmlns="http://www.w3.org/1999/xhtml"><a href="${url.replace(/&/g, '&amp;')}">scan</a></div>`,
            },
          }),
        ],
      );
    }
    refusals.push(
      [
        'an attachment url on a stack without links',
        await sendJson(s, 'POST', 'DocumentReference', {
          resourceType: 'DocumentReference',
          status: 'current',
          content: [{ attachment: { contentType: 'application/pdf', url: spellings[1] } }],
        }),
      ],
      [
        'a JSON Patch value',
        await fetch(`${s.gw.base}/Patient/${pid}`, {
          method: 'PATCH',
          headers: { ...s.auth, 'content-type': 'application/json-patch+json' },
          body: JSON.stringify([{ op: 'add', path: '/extension', value: [{ url: 'http://example.org/x', valueUri: got.url }] }]),
        }),
      ],
      [
        'a FHIRPath Patch value',
        await sendJson(s, 'PATCH', `Patient/${pid}`, {
          resourceType: 'Parameters',
          parameter: [
            {
              name: 'operation',
              part: [
                { name: 'type', valueCode: 'add' },
                { name: 'path', valueString: 'Patient' },
                { name: 'name', valueString: 'photo' },
                { name: 'value', valueString: got.url },
              ],
            },
          ],
        }),
      ],
      [
        "an operation's parameter",
        await sendJson(s, 'POST', 'DocumentReference/$validate', {
          resourceType: 'Parameters',
          parameter: [{ name: 'resource', resource: { resourceType: 'Basic', code: { text: got.url } } }],
        }),
      ],
      [
        'a Bundle entry',
        await sendJson(s, 'POST', '', {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            {
              request: { method: 'POST', url: 'Observation' },
              resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, note: [{ text: `see ${got.url}` }] },
            },
          ],
        }),
      ],
    );
    for (const [what, r] of refusals) {
      t.equal(r.status, 400, what);
      t.match(await r.json(), { issue: [{ details: { text: /signed file URL of this gateway/ } }] }, what);
    }
    t.equal(s.up.requests.filter((r) => r.method !== 'GET').length, writesBefore, 'no write reached the FHIR server');
    const ok = await sendJson(s, 'POST', 'Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { text: 'x' },
      note: [{ text: 'the report is at https://example.org/files/_file/ (no query) and https://example.org/f?x=/_file/' }],
    });
    t.equal(ok.status, 201, 'text that is not shaped like a signed URL is fine');
    await ok.arrayBuffer();
  },
);

t.test('signedUrls.links: a caller a content rule refuses gets the plain link, not a signed one', async (t) => {
  const k = urlKeys(t);
  const s = await stack(t, {
    rules: [
      {
        name: 'content-read',
        match: { interactions: ['operation'], operations: ['binary-access-read'] },
        require: { scopes: ['files.read'] },
      },
    ],
    signedUrls: { enabled: true, keys: [{ id: 'k1', file: k.file('k1') }], activeKey: 'k1', links: true },
  });
  const pdf = PDF(100_000);
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
    }),
  });
  const id = ((await c.json()) as { id: string }).id;
  const plain = (await (await fetch(`${s.gw.base}/DocumentReference/${id}?_inflate=false`, { headers: s.auth })).json()) as {
    content: { attachment: { url: string } }[];
  };
  t.match(plain.content[0].attachment.url, /\$binary-access-read\?path=/, 'no files.read: the plain link');
  const allowed = (await (
    await fetch(`${s.gw.base}/DocumentReference/${id}?_inflate=false`, { headers: await s.as('user/*.cruds files.read') })
  ).json()) as {
    content: { attachment: { url: string } }[];
  };
  t.match(allowed.content[0].attachment.url, /\/_file\/DocumentReference\//, 'with files.read: a signed URL');
});

t.test(
  'write URLs: POST to one uploads an attachment’s content as $binary-access-write would, no token; checked like every upload',
  async (t) => {
    const { s } = await signedStack(t, {
      policies: [
        { id: 'downloads', permissions: 'rw', maxWindow: '30m' },
        { id: 'readers', permissions: 'r', maxWindow: '30m' },
      ],
    });
    // The size limit of the rule for writing content holds for a write URL, declared before any byte is read.
    s.gw.reload({
      ...s.gw.settings.current.config,
      rules: [
        {
          name: 'uploads',
          match: { interactions: ['operation'], operations: ['binary-access-write'] },
          limits: { maxRequestBytes: 150_000 },
        },
      ],
    } as unknown as GatewayConfig);
    const c = await fetch(`${s.gw.base}/DocumentReference`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        status: 'current',
        content: [{ attachment: { contentType: 'application/pdf', title: 'scan' } }],
      }),
    });
    const id = ((await c.json()) as { id: string }).id;
    const path = 'DocumentReference.content[0].attachment';
    const got = await issue(s, `DocumentReference/${id}/$file-url?permission=w&path=${encodeURIComponent(path)}&window=5m`);
    t.match(got.url, new RegExp(`/_file/DocumentReference/${id}/upload\\?sv=.*&sp=w&.*&spath=.*&svid=1&sig=`));

    const pdf = PDF(80_000);
    // Refused uploads change nothing: the URL stays good for the one that passes.
    const big = await fetch(got.url, { method: 'POST', headers: { 'content-type': 'application/pdf' }, body: PDF(200_000) });
    t.equal(await code(big), 'PAYLOAD_TOO_LARGE', 'past the write rule’s size limit');
    const html = await fetch(got.url, { method: 'POST', headers: { 'content-type': 'text/html' }, body: '<script>alert(1)</script>' });
    t.equal(await code(html), 'UNSUPPORTED_MEDIA', 'the allow-list holds');
    const lying = await fetch(got.url, {
      method: 'POST',
      headers: { 'content-type': 'application/pdf' },
      body: Buffer.from('<html><script>x</script></html>'),
    });
    t.equal(lying.status, 415, 'sniffed: not a PDF');
    await lying.arrayBuffer();
    const before = s.up.requests.length;
    const up = await fetch(got.url, {
      method: 'POST',
      headers: { 'content-type': 'application/pdf', authorization: 'Bearer forged', 'x-provenance': '{}', prefer: 'return=representation' },
      body: pdf,
    });
    t.equal(up.status, 200, await up.clone().text());
    const sent = s.up.requests.slice(before);
    t.ok(
      sent.some((r) => r.method === 'PUT'),
      'the resource was updated',
    );
    t.notOk(
      sent.some(
        (r) => r.headers['authorization'] !== undefined || r.headers['x-provenance'] !== undefined || r.headers['prefer'] !== undefined,
      ),
      'nothing of the holder’s headers but the upload’s own reached the FHIR server',
    );
    t.equal((await up.arrayBuffer()).byteLength, 0, 'the updated resource is the issuer’s to read: withheld');
    t.same(
      ['location', 'content-location', 'etag', 'last-modified'].filter((h) => up.headers.has(h)),
      [],
      'nor where or which version it is: the holder is nobody the gateway knows',
    );
    const again = await fetch(got.url, { method: 'POST', headers: { 'content-type': 'application/pdf' }, body: PDF(81_000) });
    t.equal(await code(again), 'PRECONDITION_FAILED', 'bound to the version it was issued for: used once');
    const back = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${encodeURIComponent(path)}`, {
      headers: s.auth,
    });
    t.equal(sha256(Buffer.from(await back.arrayBuffer())), sha256(pdf), 'the uploaded bytes, read back with a token');

    t.equal(await code(await fetch(got.url)), 'SIGNATURE_PERMISSION', 'a write URL does not read');
    const read = await issue(s, `DocumentReference/${id}/$file-url?path=${encodeURIComponent(path)}`);
    t.equal(
      await code(await fetch(read.url, { method: 'POST', headers: { 'content-type': 'application/pdf' }, body: pdf })),
      'SIGNATURE_PERMISSION',
      'a read URL does not write',
    );

    const readOnly = await fetch(`${s.gw.base}/DocumentReference/${id}/$file-url?permission=w&path=${encodeURIComponent(path)}`, {
      headers: await s.as('user/*.rs'),
    });
    t.equal(await code(readOnly), 'INSUFFICIENT_SCOPE', 'issuing a write URL needs the right to write');
    const { id: binId } = await pdfBinary(s);
    const bin = await fetch(`${s.gw.base}/Binary/${binId}/$file-url?permission=w`, { headers: s.auth });
    t.equal(bin.status, 400, 'not for Binary');
    await bin.arrayBuffer();
    const readPolicy = await fetch(
      `${s.gw.base}/DocumentReference/${id}/$file-url?permission=w&path=${encodeURIComponent(path)}&policy=readers`,
      {
        headers: s.auth,
      },
    );
    t.equal(await code(readPolicy), 'SIGNATURE_REVOKED', 'a policy that does not grant w signs no write URL');
    const store = await fetch(`${s.gw.base}/DocumentReference/${id}/$file-url?permission=w&path=${encodeURIComponent(path)}&via=store`, {
      headers: s.auth,
    });
    t.equal(store.status, 400, 'write URLs always go through the gateway');
    await store.arrayBuffer();
  },
);
