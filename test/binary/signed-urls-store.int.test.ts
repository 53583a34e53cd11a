// Store-native signed URLs (`$file-url?via=store`): an S3 presigned GET followed against s3rver,
// which verifies SigV4 query signatures and their expiry, and an Azure blob SAS the Azure SDK
// follows against azurite; the gaps a store cannot enforce refused unless the policy accepts them.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { code, PDF, sha256, stack, type Stack } from '../helpers/binary-stack.js';
import type { S3Server } from '../helpers/s3-server.js';
import { fileUrlParams, s3Storage, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { S3BlobStore } from '../../src/storage/s3.js';
import { AzureBlobStore } from '../../src/storage/azure.js';
import { BlobClient, BlobServiceClient } from '@azure/storage-blob';
import { startAzurite } from '../helpers/azurite.js';
import { eventually } from '../helpers/poll.js';

async function s3Stack(t: Test, signedUrls: Record<string, unknown> = {}): Promise<{ s: Stack; srv: S3Server }> {
  const { srv, storage } = await s3Storage(t);
  // Every store URL outlives a quarantine of its blob: the operator accepts that to have them.
  const s = await stack(t, {
    storage,
    signedUrls: signedUrlsConfig(urlKeys(t), { store: { enabled: true, acceptGaps: ['withdraw'] }, ...signedUrls }),
  });
  return { s, srv };
}

async function pdfBinary(s: Stack): Promise<{ id: string; pdf: Buffer }> {
  const pdf = PDF(90_000);
  const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/pdf' }, body: pdf });
  await r.arrayBuffer();
  t.equal(r.status, 201);
  return { id: (r.headers.get('location') ?? '').split('/')[5], pdf };
}

/** The HTTP status an Azure SDK call failed with (undefined when it did not fail). */
const statusOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: { statusCode?: number }) => err.statusCode,
  );

const params = fileUrlParams;
/** `filename=scan Müller.pdf` as the URL pins it: an ASCII fallback, then RFC 8187's filename*. */
const UNICODE_DISPOSITION = `attachment; filename="scan Muller.pdf"; filename*=UTF-8''scan%20M%C3%BCller.pdf`;

t.test(
  'S3: a presigned GET the S3 server verifies; same bytes, pinned type and disposition; tampered or expired refused by S3',
  async (t) => {
    const { s, srv } = await s3Stack(t);
    const { id, pdf } = await pdfBinary(s);
    const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store&window=10m&filename=${encodeURIComponent('scan Müller.pdf')}`, {
      headers: s.auth,
    });
    t.equal(r.status, 200);
    const got = await params(r);
    t.equal(got['via'], 'store');
    const url = got['url']!;
    t.ok(url.startsWith(`${srv.endpoint}/${srv.bucket}/blobs/`), 'served by the store, not the gateway');
    t.match(url, /X-Amz-Algorithm=AWS4-HMAC-SHA256.*X-Amz-Expires=\d+.*X-Amz-Signature=[0-9a-f]{64}/);
    t.ok(Date.parse(got['expiresAt']!) - Date.now() <= 10 * 60_000);

    const before = srv.requests.length;
    const d = await fetch(url);
    t.equal(d.status, 200);
    t.equal(sha256(Buffer.from(await d.arrayBuffer())), sha256(pdf), 'identical bytes');
    t.equal(d.headers.get('content-type'), 'application/pdf');
    t.equal(d.headers.get('content-disposition'), UNICODE_DISPOSITION, 'a name in another script pinned by S3 too');
    const seen = srv.requests.slice(before).find((x) => x.method === 'GET');
    t.equal(seen?.authenticated, true, 'S3 checked the signature');

    const tampered = url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
    t.equal((await fetch(tampered)).status, 403, 'a changed signature');
    const widened = url.replace(/response-content-disposition=[^&]+/, 'response-content-disposition=inline');
    t.equal((await fetch(widened)).status, 403, 'a changed disposition');

    const moved = url.replace(/X-Amz-Date=\d{8}T\d{6}Z/, 'X-Amz-Date=20200101T000000Z');
    t.equal((await fetch(moved)).status, 403, 'an altered date breaks the signature');

    // The driver's own URL for the same blob, signed two hours ago for one hour: S3 says it expired.
    const driver = new S3BlobStore({
      bucket: srv.bucket,
      endpoint: srv.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: srv.credentials,
    });
    const blob = new URL(url).pathname.split('/').pop()!;
    const now = Date.now();
    const old = await driver.readUrl(blob, { startsAt: new Date(now - 7_200_000), expiresAt: new Date(now - 3_600_000), httpsOnly: false });
    const e = await fetch(old);
    t.equal(e.status, 403);
    t.match(await e.text(), /expired/i, 'expired, by S3');
    const fresh = await driver.readUrl(blob, { startsAt: new Date(now - 60_000), expiresAt: new Date(now + 600_000), httpsOnly: false });
    const f = await fetch(fresh);
    t.equal(f.status, 200, 'the same driver call within its window: served');
    t.equal(sha256(Buffer.from(await f.arrayBuffer())), sha256(pdf));
  },
);

t.test('S3 cannot enforce a client address, revocation by policy or HTTPS only: refused unless accepted', async (t) => {
  const { s } = await s3Stack(t, { policies: [{ id: 'dl', permissions: 'r', maxWindow: '15m' }] });
  const { id } = await pdfBinary(s);
  let r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store&ip=127.0.0.1`, { headers: s.auth });
  t.equal(r.status, 400);
  t.match(await r.text(), /cannot enforce a client address \(ip:/);
  r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store&policy=dl`, { headers: s.auth });
  t.equal(r.status, 400);
  t.match(await r.text(), /revocation by stored policy/);
  r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?policy=dl&ip=127.0.0.1`, { headers: s.auth });
  t.equal(r.status, 200, "the gateway's own URL carries both");
  await r.arrayBuffer();

  const accepting = await s3Stack(t, {
    policies: [{ id: 'dl', permissions: 'r', maxWindow: '15m' }],
    store: { enabled: true, acceptGaps: ['ip', 'withdraw'] },
  });
  const b = await pdfBinary(accepting.s);
  r = await fetch(`${accepting.s.gw.base}/Binary/${b.id}/$file-url?via=store&ip=10.0.0.1`, { headers: accepting.s.auth });
  t.equal(r.status, 200, 'the gap accepted: issued (and S3 will not check the address)');
  const url = (await params(r))['url']!;
  const d = await fetch(url);
  t.equal(d.status, 200, 'followed from another address: exactly the accepted gap');
  await d.arrayBuffer();
});

t.test('store URLs off, or a store without URLs of its own: refused with the reason', async (t) => {
  const { s } = await s3Stack(t, { store: { enabled: false } });
  const { id } = await pdfBinary(s);
  const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store`, { headers: s.auth });
  t.equal(await code(r), 'BAD_REQUEST');
  const dir = mkdtempSync(join(tmpdir(), 'fbg-url-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'k1'), randomBytes(32).toString('base64'));
  const fsStack = await stack(t, {
    signedUrls: { enabled: true, keys: [{ id: 'k1', file: join(dir, 'k1') }], activeKey: 'k1' },
  });
  const f = await pdfBinary(fsStack);
  const fr = await fetch(`${fsStack.gw.base}/Binary/${f.id}/$file-url?via=store`, { headers: fsStack.auth });
  t.equal(fr.status, 400);
  t.match(await fr.text(), /store URLs are off/, 'store URLs on the filesystem store are refused at load (test/config/load.test.ts)');
  const bad = await fetch(`${fsStack.gw.base}/Binary/${f.id}/$file-url?via=cdn`, { headers: fsStack.auth });
  t.equal(bad.status, 400);
});

t.test('Azure: a blob SAS the Azure SDK follows against azurite; refused once it expired; SAS fields as the seed sets them', async (t) => {
  const az = await startAzurite(t);
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('fhir-blobs');
  await container.create();
  const env = `FBG_TEST_AZURE_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[env] = az.accountKey;
  t.teardown(() => {
    delete process.env[env];
  });
  const s = await stack(t, {
    storage: {
      driver: 'azure',
      azure: { container: 'fhir-blobs', accountName: az.accountName, accountKeyEnv: env, url: az.blobEndpoint },
    },
    signedUrls: signedUrlsConfig(urlKeys(t), {
      policies: [{ id: 'dl', permissions: 'r', maxWindow: '15m' }],
      store: { enabled: true, acceptGaps: ['withdraw'] },
    }),
  });
  const { id, pdf } = await pdfBinary(s);
  const r = await fetch(
    `${s.gw.base}/Binary/${id}/$file-url?via=store&window=10m&ip=127.0.0.0/24&filename=${encodeURIComponent('scan Müller.pdf')}`,
    { headers: s.auth },
  );
  t.equal(r.status, 200);
  const url = (await params(r))['url']!;
  t.ok(url.startsWith(`${az.blobEndpoint}/fhir-blobs/blobs/`), 'served by the store');
  const q = new URL(url).searchParams;
  t.equal(q.get('sp'), 'r', 'under no policy: the permission in the SAS');
  t.equal(q.get('sr'), 'b');
  t.equal(q.get('sip'), '127.0.0.0-127.0.0.255', 'the CIDR range as Azure spells a range');
  t.equal(q.get('spr'), 'https,http', 'plain HTTP only because the rule lets it in');
  t.equal(q.get('rsct'), 'application/pdf');
  t.equal(q.get('rscd'), UNICODE_DISPOSITION);
  t.ok(q.get('st') && q.get('se') && q.get('sig'));

  // The Azure SDK itself follows the URL (anonymous client: the SAS is the only credential).
  const blob = new BlobClient(url);
  const got = await blob.downloadToBuffer();
  t.equal(sha256(got), sha256(pdf), 'identical bytes through the SDK');
  const props = await blob.getProperties();
  t.equal(props.contentDisposition, UNICODE_DISPOSITION, 'a name in another script pinned by the SAS');

  const tampered = new BlobClient(url.replace(/sp=r/, 'sp=rw'));
  t.equal(await statusOf(tampered.downloadToBuffer()), 403, 'a widened permission fails the signature');
  // Under a stored access policy: the container holds it (with the permission), the SAS names it.
  const p = await fetch(`${s.gw.base}/Binary/${id}/$file-url?via=store&policy=dl`, { headers: s.auth });
  t.equal(p.status, 200);
  const underPolicy = (await params(p))['url']!;
  const pq = new URL(underPolicy).searchParams;
  t.equal(pq.get('si'), 'dl');
  t.equal(pq.get('sp'), null, 'the permission is the policy’s');
  t.same(
    (await container.getAccessPolicy()).signedIdentifiers.map((x) => ({ id: x.id, permissions: x.accessPolicy?.permissions })),
    [{ id: 'dl', permissions: 'r' }],
    'the gateway set the policy on the container',
  );
  t.equal(sha256(await new BlobClient(underPolicy).downloadToBuffer()), sha256(pdf));
  // Revoked by reload: the policy leaves the configuration, the container, and its SASes die.
  const cfg = s.gw.settings.current.config;
  s.gw.reload({ ...cfg, signedUrls: { ...cfg.signedUrls, policies: [] } });
  await eventually(async () => (await container.getAccessPolicy()).signedIdentifiers.length === 0, 'the container policy removed');
  t.equal(await statusOf(new BlobClient(underPolicy).downloadToBuffer()), 403, 'a SAS under a removed policy is refused by the store');
  t.equal(sha256(await blob.downloadToBuffer()), sha256(pdf), 'a SAS under no policy lives on until it expires');

  // The driver's own SAS for the same blob, over an hour ago: azurite refuses it as expired.
  const driver = new AzureBlobStore({
    container: 'fhir-blobs',
    accountName: az.accountName,
    accountKey: az.accountKey,
    url: az.blobEndpoint,
  });
  const name = new URL(url).pathname.split('/').pop()!;
  const now = Date.now();
  const old = await driver.readUrl(name, { startsAt: new Date(now - 7_200_000), expiresAt: new Date(now - 3_600_000), httpsOnly: false });
  t.equal(await statusOf(new BlobClient(old).downloadToBuffer()), 403, 'expired: refused by the store');
});
