// The files GraphQL API (docs/graphql.md) through the running gateway, in front of Medplum's FHIR
// router: uploads per the GraphQL multipart request spec, sent by fetch's FormData (a real client
// encoding), streamed into the store; their signed URLs followed with no token.
import t, { type Test } from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, sha256, stack, type Stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

const UPLOAD = `mutation Up($file: Upload!, $type: String!, $for: String!, $security: FileSecurity) {
  uploadFile(forEntity: $for, data: $file, filename: "Röntgen scan.pdf", contentType: $type, security: $security) {
    fileId url storagePath sasToken expiresAt hashSha256 size contentType
  }
}`;

/** The upload's filename as the URL pins it: ASCII fallback, then RFC 8187's filename*. */
const SCAN_DISPOSITION = `attachment; filename="Rontgen scan.pdf"; filename*=UTF-8''R%C3%B6ntgen%20scan.pdf`;

interface GqlAnswer {
  status: number;
  contentType: string | null;
  body: { data?: Record<string, Record<string, unknown> | null> | null; errors?: { message: string; extensions?: { code?: string } }[] };
}

async function gqlStack(t: Test, extra: Record<string, unknown> = {}): Promise<Stack> {
  return stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)), ...extra });
}

/** A token with a subject (files belong to whoever uploaded them). */
const tokenOf = async (s: Stack, sub: string, scope = 'user/*.cruds files.write', patient?: string) => ({
  authorization: `Bearer ${await mintToken(s.key, { claims: { sub, scope, ...(patient ? { patient } : {}) } })}`,
});

async function answer(r: Response): Promise<GqlAnswer> {
  return { status: r.status, contentType: r.headers.get('content-type'), body: (await r.json()) as GqlAnswer['body'] };
}

/** A multipart upload as the spec has it: operations, map, then the file. */
async function upload(
  s: Stack,
  auth: Record<string, string>,
  file: Buffer,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = { 'graphql-require-preflight': '1' },
): Promise<GqlAnswer> {
  const form = new FormData();
  form.append(
    'operations',
    JSON.stringify({ query: UPLOAD, variables: { file: null, type: 'application/pdf', for: 'Patient/123', ...variables } }),
  );
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', new Blob([file], { type: 'application/octet-stream' }), 'scan.pdf');
  return answer(await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, ...headers }, body: form }));
}

const query = async (s: Stack, auth: Record<string, string>, q: string, variables: Record<string, unknown> = {}) =>
  answer(
    await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({ query: q, variables }),
    }),
  );

const codeOf = (a: GqlAnswer) => a.body.errors?.[0]?.extensions?.code;
const blobCount = (s: Stack) => s.gw.blobFiles().filter((f) => f.endsWith('.blob')).length;

t.test('uploadFile streams a PDF into the store; its URL serves the identical bytes with no token; file and refreshFileUrl', async (t) => {
  const s = await gqlStack(t);
  const alice = await tokenOf(s, 'alice');
  const pdf = PDF(300_000);
  const up = await upload(
    s,
    alice,
    pdf,
    { security: { accessWindow: '10m', allowedIps: ['127.0.0.0/8'] } },
    { 'graphql-require-preflight': '1', 'x-file-metadata': '{"purpose":"patient_consent"}' },
  );
  t.equal(up.status, 200, JSON.stringify(up.body));
  t.match(up.contentType, /^application\/graphql-response\+json/);
  const f = up.body.data!['uploadFile']!;
  t.match(f, {
    fileId: /^[a-z0-9]{32}$/,
    storagePath: `urn:fhir-binary-gateway:file:${String(f['fileId'])}`,
    hashSha256: sha256(pdf),
    size: pdf.length,
    contentType: 'application/pdf',
    url: new RegExp(`^http://gateway\\.test/fhir/_file/Patient/123/${String(f['fileId'])}\\?sv=`),
  });
  t.equal(f['sasToken'], String(f['url']).split('?')[1], 'the SAS token is the URL’s query');
  const left = Date.parse(String(f['expiresAt'])) - Date.now();
  t.ok(left > 7 * 60_000 && left <= 10 * 60_000, `accessWindow honoured (${left} ms)`);
  const followed = await fetch(String(f['url']).replace('http://gateway.test', s.gw.url));
  t.equal(followed.status, 200);
  t.equal(sha256(Buffer.from(await followed.arrayBuffer())), sha256(pdf), 'the identical bytes, no token');
  t.equal(followed.headers.get('content-disposition'), SCAN_DISPOSITION, 'the filename, in any script');

  const info = await query(
    s,
    alice,
    'query($id: ID!) { file(fileId: $id) { fileId size contentType hashSha256 purpose state forEntity linkedTo } }',
    {
      id: f['fileId'],
    },
  );
  t.same(info.body.data!['file'], {
    fileId: f['fileId'],
    size: pdf.length,
    contentType: 'application/pdf',
    hashSha256: sha256(pdf),
    purpose: 'patient_consent',
    state: 'PENDING',
    forEntity: 'Patient/123',
    linkedTo: null,
  });
  const bob = await tokenOf(s, 'bob');
  const other = await query(s, bob, 'query($id: ID!) { file(fileId: $id) { fileId } }', { id: f['fileId'] });
  t.same(other.body.data, { file: null }, "another caller's file is as absent as a missing one");

  const refreshed = await query(
    s,
    alice,
    'mutation($id: ID!) { refreshFileUrl(fileId: $id, accessWindow: "5m") { url sasToken expiresAt } }',
    {
      id: f['fileId'],
    },
  );
  const r = refreshed.body.data!['refreshFileUrl']!;
  t.not(r['url'], f['url'], 'a new URL');
  t.ok(Date.parse(String(r['expiresAt'])) - Date.now() <= 5 * 60_000, 'for the window asked');
  const again = await fetch(String(r['url']).replace('http://gateway.test', s.gw.url));
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), sha256(pdf));
  t.equal(new URL(String(r['url'])).searchParams.get('sip'), '127.0.0.0/8', "a refresh keeps the upload's address range");
  t.equal(again.headers.get('content-disposition'), SCAN_DISPOSITION, 'and its filename');
  const notMine = await query(s, bob, 'mutation($id: ID!) { refreshFileUrl(fileId: $id) { url } }', { id: f['fileId'] });
  t.equal(codeOf(notMine), 'NOT_FOUND', 'refreshing is for the uploader');

  const audit = s.gw.logs.lines.find((l) => l['audit'] === 1 && (l['what'] as { operation?: string }).operation === 'gateway-graphql');
  t.match(
    audit,
    { what: { blobs: [{ action: 'write', bytes: pdf.length }], urls: [{ resource: 'Patient/123', permission: 'r' }] } },
    'the upload is audited',
  );
});

t.test("the seed's expired-token row: an upload's URL expires, and refreshFileUrl renews it", async (t) => {
  // A 1 s leeway and a 1 s window: the URL's expiry is reached in the test's time.
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t), { clockSkew: '1s' }) });
  const alice = await tokenOf(s, 'alice');
  const pdf = PDF(20_000);
  const f = (await upload(s, alice, pdf, { security: { accessWindow: '1s' } })).body.data!['uploadFile']!;
  const local = (url: unknown) => String(url).replace('http://gateway.test', s.gw.url);
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(String(f['expiresAt'])) - Date.now()) + 2_100));
  const expired = await fetch(local(f['url']));
  t.equal(expired.status, 403);
  const outcome = (await expired.json()) as { issue: { details: { coding: { code: string }[]; text: string } }[] };
  t.equal(outcome.issue[0].details.coding[0].code, 'SIGNATURE_EXPIRED', 'the URL expired');
  t.match(outcome.issue[0].details.text, /refreshFileUrl/, 'and says how to get a new one');
  const renewed = await query(s, alice, 'mutation($id: ID!) { refreshFileUrl(fileId: $id, accessWindow: "5m") { url expiresAt } }', {
    id: f['fileId'],
  });
  const again = await fetch(local(renewed.body.data!['refreshFileUrl']!['url']));
  t.equal(again.status, 200, 'refreshFileUrl renews it');
  t.equal(sha256(Buffer.from(await again.arrayBuffer())), sha256(pdf));
});

t.test('refusals: CSRF guard, scopes, patients, the allow-list, sniffing, size, encryption; nothing is left in the store', async (t) => {
  const s = await gqlStack(t, {
    rules: [
      { name: 'uploads', match: { interactions: ['operation'], operations: ['gateway-upload'] }, limits: { maxRequestBytes: 200_000 } },
    ],
  });
  const alice = await tokenOf(s, 'alice');
  const pdf = PDF(50_000);
  const before = blobCount(s);
  const noPreflight = await upload(s, alice, pdf, {}, {});
  t.equal(noPreflight.status, 400, 'no preflight header: a browser could have sent it cross-site');
  t.equal(codeOf(await upload(s, await tokenOf(s, 'alice', 'user/*.cruds'), pdf)), 'INSUFFICIENT_SCOPE', 'without files.write');
  t.equal(
    codeOf(await upload(s, await tokenOf(s, 'alice', 'user/*.rs files.write'), pdf)),
    'INSUFFICIENT_SCOPE',
    'without create on DocumentReference',
  );
  t.equal(
    codeOf(await upload(s, await tokenOf(s, 'pat', 'patient/*.cruds files.write', '999'), pdf)),
    'INSUFFICIENT_SCOPE',
    "a patient's token, for another patient",
  );
  for (const claims of [{}, { sub: '' }, { sub: '  ' }]) {
    const anonymous = { authorization: `Bearer ${await mintToken(s.key, { claims: { scope: 'user/*.cruds files.write', ...claims } })}` };
    t.equal(codeOf(await upload(s, anonymous, pdf)), 'INSUFFICIENT_SCOPE', `a token without a subject: ${JSON.stringify(claims)}`);
  }
  const own = await upload(s, await tokenOf(s, 'pat', 'patient/*.cruds files.write', '123'), pdf);
  t.match(own.body, { data: { uploadFile: { fileId: String } } }, "a patient's token, for that patient");
  t.equal(codeOf(await upload(s, alice, pdf, { type: 'text/html' })), 'UNSUPPORTED_MEDIA', 'not in the allow-list');
  t.equal(codeOf(await upload(s, alice, Buffer.from('<html><script>alert(1)</script></html>'))), 'UNSUPPORTED_MEDIA', 'sniffed: not a PDF');
  t.equal(codeOf(await upload(s, alice, PDF(300_000))), 'PAYLOAD_TOO_LARGE', 'past the rule’s size limit');
  t.equal(
    codeOf(await upload(s, alice, pdf, { security: { encryption: 'AES256' } })),
    'BAD_REQUEST',
    'AES256 on a store without encryption',
  );
  t.equal(codeOf(await upload(s, alice, pdf, { for: 'not a reference' })), 'BAD_REQUEST');
  t.equal(codeOf(await upload(s, alice, pdf, { security: { allowedIps: ['10.0.0.0/8', '192.168.0.0/16'] } })), 'BAD_REQUEST', 'one range');
  t.equal(blobCount(s), before + 1, 'only the accepted upload is in the store');

  const noToken = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"query":"{ __typename }"}',
  });
  t.equal(noToken.status, 401, 'the pipeline holds for the route itself');
  await noToken.arrayBuffer();
  const introspect = await query(s, alice, '{ __schema { types { name } } }');
  t.equal(introspect.status, 400, 'introspection is off by default');
  const deep = await query(s, alice, `{ ${'file(fileId: "x") { fileId } '.repeat(300)} }`);
  t.equal(deep.status, 400, 'more fields than graphql.maxFields');
  const batch = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...alice, 'content-type': 'application/json' },
    body: JSON.stringify([{ query: '{ __typename }' }, { query: '{ __typename }' }]),
  });
  t.equal(batch.status, 400, 'batches are refused');
  await batch.arrayBuffer();
  const proto = new FormData();
  proto.append('operations', JSON.stringify({ query: UPLOAD, variables: { file: null, type: 'application/pdf', for: 'Patient/1' } }));
  proto.append('map', JSON.stringify({ 0: ['variables.__proto__.polluted'] }));
  proto.append('0', new Blob([pdf]), 'x.pdf');
  const polluted = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...alice, 'graphql-require-preflight': '1' },
    body: proto,
  });
  t.equal(polluted.status, 400, 'a map path through __proto__ is refused');
  await polluted.arrayBuffer();
  t.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

t.test('graphql.enabled off: the route is not there', async (t) => {
  const s = await stack(t);
  const r = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/json' },
    body: '{"query":"{ __typename }"}',
  });
  t.equal(r.status, 404);
  await r.arrayBuffer();
});

t.test(
  'fileTypeOverride: a privileged scope takes a type past the allow-list, never to executable or active content; audited',
  async (t) => {
    const s = await gqlStack(t);
    const csv = Buffer.from('name,value\nheight,172\n');
    const override = { type: 'text/csv' };
    const OVERRIDE = UPLOAD.replace('security: $security)', 'security: $security, fileTypeOverride: $override)').replace(
      '$security: FileSecurity)',
      '$security: FileSecurity, $override: String)',
    );
    const send = async (auth: Record<string, string>, file: Buffer, variables: Record<string, unknown>) => {
      const form = new FormData();
      form.append('operations', JSON.stringify({ query: OVERRIDE, variables: { file: null, for: 'Patient/123', ...variables } }));
      form.append('map', JSON.stringify({ 0: ['variables.file'] }));
      form.append('0', new Blob([file]), 'f');
      return answer(
        await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'graphql-require-preflight': '1' }, body: form }),
      );
    };
    const plain = await tokenOf(s, 'alice');
    const privileged = await tokenOf(s, 'alice', 'user/*.cruds files.write files.override');
    t.equal(codeOf(await send(plain, csv, override)), 'UNSUPPORTED_MEDIA', 'text/csv is not in the allow-list');
    t.equal(
      codeOf(await send(plain, csv, { ...override, override: 'text/csv' })),
      'INSUFFICIENT_SCOPE',
      'the override needs files.override',
    );
    const ok = await send(privileged, csv, { ...override, override: 'text/csv' });
    t.match(ok.body.data, { uploadFile: { contentType: 'text/csv', size: csv.length } }, 'taken past the allow-list');
    const audit = s.gw.logs.lines.find(
      (l) => l['audit'] === 1 && (l['what'] as { blobs?: { typeOverride?: string }[] }).blobs?.some((b) => b.typeOverride === 'text/csv'),
    );
    t.ok(audit, 'the override is on record');
    for (const [type, body, why] of [
      ['text/html', Buffer.from('<p>hi</p>'), 'an active type'],
      ['application/octet-stream', csv, 'octet-stream: unchecked bytes'],
      ['text/plain', Buffer.from('<!DOCTYPE html><script>alert(1)</script>'), 'HTML declared as text'],
      ['text/plain', Buffer.from('#!/bin/sh\nrm -rf /\n'), 'a script declared as text'],
      [
        'text/plain',
        Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<html><script>x</script></html>')]),
        'HTML after a UTF-8 BOM',
      ],
      ['text/plain', Buffer.from('<!-- hello --><body onload="x()">'), 'HTML after a comment'],
      ['application/x-javascript', Buffer.from('alert(1)'), 'a script type by another name'],
      [
        'text/plain',
        Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'),
        'SVG declared as text',
      ],
    ] as const)
      t.equal(codeOf(await send(privileged, body, { type, override: type })), 'UNSUPPORTED_MEDIA', why);
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(5000)]);
    t.equal(
      codeOf(await send(privileged, elf, { type: 'application/x-elf', override: 'application/x-elf' })),
      'UNSUPPORTED_MEDIA',
      'an executable type',
    );
  },
);

t.test('graphql.explorer: a browser gets the GraphiQL page with no token, under a CSP; off, the route wants a token', async (t) => {
  const s = await gqlStack(t, { graphql: { enabled: true, explorer: true } });
  const page = await fetch(`${s.gw.url}/graphql`, { headers: { accept: 'text/html,application/xhtml+xml' } });
  t.equal(page.status, 200);
  const html = await page.text();
  t.match(html, /GraphiQL\.createFetcher\(\{ url: "\/graphql" \}\)/);
  const csp = page.headers.get('content-security-policy') ?? '';
  const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
  t.ok(nonce && html.includes(`nonce="${nonce}"`), 'inline script only by its nonce');
  t.match(csp, /default-src 'none'/);
  t.match(csp, /connect-src 'self'/);
  const strict = await gqlStack(t, {
    graphql: { enabled: true, explorer: true },
    server: { trustedProxies: ['127.0.0.1/32'] },
    rules: [{ name: 'gql', match: { interactions: ['operation'], operations: ['gateway-graphql'] }, require: { https: true } }],
  });
  const plainHttp = await fetch(`${strict.gw.url}/graphql`, { headers: { accept: 'text/html', 'x-forwarded-proto': 'http' } });
  t.equal(plainHttp.status, 403, 'the page (where tokens are pasted) only over a transport the API takes');
  await plainHttp.arrayBuffer();
  const off = await gqlStack(t);
  const refused = await fetch(`${off.gw.url}/graphql`, { headers: { accept: 'text/html' } });
  t.equal(refused.status, 401, 'no explorer: a GET is a request like any other');
  await refused.arrayBuffer();
});

t.test(
  "the seed's validation matrix over GraphQL: IP range 403 FORBIDDEN, HTTPS 403 INSECURE_TRANSPORT, content type 415 UNSUPPORTED_MEDIA",
  async (t) => {
    const s = await gqlStack(t, {
      // The test client (127.0.0.1) plays the load balancer: its X-Forwarded-For/-Proto are believed.
      server: { trustedProxies: ['127.0.0.1/32'] },
      rules: [
        {
          name: 'uploads',
          match: { interactions: ['operation'], operations: ['gateway-upload'] },
          require: { https: true, ipAllow: ['192.168.1.0/24'] },
        },
      ],
    });
    const alice = await tokenOf(s, 'alice');
    const inside = { 'x-forwarded-for': '192.168.1.20', 'x-forwarded-proto': 'https' };
    const pdf = PDF(40_000);
    const headers = (h: Record<string, string>) => ({ 'graphql-require-preflight': '1', ...h });
    const ok = await upload(s, alice, pdf, {}, headers(inside));
    t.match(ok.body.data, { uploadFile: { fileId: String } }, 'from the allowed range over HTTPS');
    const outside = await upload(s, alice, pdf, {}, headers({ ...inside, 'x-forwarded-for': '203.0.113.5' }));
    t.same(
      [codeOf(outside), outside.body.errors?.[0]?.extensions],
      ['FORBIDDEN', { code: 'FORBIDDEN', status: 403 }],
      'IP range: 403 FORBIDDEN',
    );
    const plain = await upload(s, alice, pdf, {}, headers({ ...inside, 'x-forwarded-proto': 'http' }));
    t.same(plain.body.errors?.[0]?.extensions, { code: 'INSECURE_TRANSPORT', status: 403 }, 'HTTPS required: 403 INSECURE_TRANSPORT');
    const html = await upload(s, alice, pdf, { type: 'text/html' }, headers(inside));
    t.same(html.body.errors?.[0]?.extensions, { code: 'UNSUPPORTED_MEDIA', status: 415 }, 'content type: 415 UNSUPPORTED_MEDIA');
  },
);
