// FINDING (signed URLs review round 3): revoking a stored access policy by any means but removing it
// kills the gateway's URLs and leaves Azure SASes signed under the same policy serving.
// docs/signed-urls.md: "Removing a policy, moving its notAfter into the past, taking a permission
// from it or shortening its maxWindow below a URL's window revokes every URL signed under it at the
// next reload", and the store table lists revocation by stored policy as something Azure does (its
// only gap is `withdraw`, so no operator is asked to accept a `policy` gap for Azure). Cause:
// AzureBlobStore.syncUrlPolicies (src/storage/azure.ts) copies every configured policy to the
// container with only its permission — a policy past its `notAfter` stays on the container, and a
// policy narrowed from `rw` to `w` is written as `rw` (`permissions.includes('w') ? 'rw' : 'r'`), so
// its read SASes keep reading. UrlSigner.checkPolicy refuses the gateway's own URLs in both cases.
// An operator who ends a policy early (an incident, a study closed) believes every URL under it is
// dead; the store's URLs (the large downloads) live on to their expiry.
//
// Suggested fix: sync only the policies that still grant reading and have not ended (leave out a
// policy past `notAfter`, or with no `r`), and write `w`-only policies without `r`; for a shortened
// maxWindow either sign store URLs under a per-generation identifier (`dl.<hash of the policy>`) so
// any change of a policy retires its old identifier, or list `policy` as an Azure gap for these cases.
import { randomBytes } from 'node:crypto';
import { BlobClient, BlobServiceClient } from '@azure/storage-blob';
import t from 'tap';
import type { GatewayConfig } from '../../src/config/types.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { startAzurite } from '../helpers/azurite.js';
import { fileUrlParams, signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { outcome } from './helpers.js';

/** The HTTP status of an anonymous download through a SAS (200 when it serves). */
const statusOf = (url: string) =>
  new BlobClient(url).downloadToBuffer().then(
    () => 200,
    (err: { statusCode?: number }) => err.statusCode ?? 0,
  );

/** Polls a SAS until the store refuses it, for at most `ms` (the container's policies are set after the reload returns). */
async function settledStatus(url: string, ms = 4_000): Promise<number> {
  const deadline = Date.now() + ms;
  let last = await statusOf(url);
  while (last === 200 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = await statusOf(url);
  }
  return last;
}

t.test('a policy ended by notAfter, or no longer granting read, revokes its Azure SASes as it revokes the gateway URLs', async (t) => {
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
      policies: [
        { id: 'dl', permissions: 'r', maxWindow: '15m' },
        { id: 'share', permissions: 'rw', maxWindow: '15m' },
      ],
      store: { enabled: true, acceptGaps: ['withdraw'] },
    }),
  });
  const c = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/pdf' },
    body: PDF(90_000),
  });
  await c.arrayBuffer();
  const id = (c.headers.get('location') ?? '').split('/')[5];
  const issue = async (q: string) => {
    const r = await fetch(`${s.gw.base}/Binary/${id}/$file-url?window=10m&${q}`, { headers: s.auth });
    t.equal(r.status, 200, q);
    return (await fileUrlParams(r))['url']!.replace('http://gateway.test', s.gw.url);
  };
  const sas = { dl: await issue('via=store&policy=dl'), share: await issue('via=store&policy=share') };
  const own = { dl: await issue('policy=dl'), share: await issue('policy=share') };
  t.equal(await statusOf(sas.dl), 200, 'before: the SAS under dl serves');
  t.equal(await statusOf(sas.share), 200, 'before: the SAS under share serves');

  // The operator ends `dl` now (notAfter in the past) and takes reading away from `share`.
  const cfg = s.gw.settings.current.config;
  s.gw.reload({
    ...cfg,
    signedUrls: {
      ...cfg.signedUrls,
      policies: [
        { id: 'dl', permissions: 'r', maxWindow: '15m', notAfter: new Date(Date.now() - 60_000).toISOString() },
        { id: 'share', permissions: 'w', maxWindow: '15m' },
      ],
    },
  } as unknown as GatewayConfig);

  t.same(await outcome(fetch(own.dl)), [403, 'SIGNATURE_REVOKED'], 'the gateway URL under dl is revoked (holds)');
  t.same(await outcome(fetch(own.share)), [403, 'SIGNATURE_REVOKED'], 'the gateway read URL under share is revoked (holds)');
  t.equal(await settledStatus(sas.dl), 403, 'the Azure SAS under the ended policy dl is refused by the store');
  t.equal(await settledStatus(sas.share), 403, 'the Azure SAS under share, which no longer grants r, is refused by the store');
  const held = (await container.getAccessPolicy()).signedIdentifiers.map((x) => ({ id: x.id, permissions: x.accessPolicy?.permissions }));
  t.notOk(
    held.some((p) => p.id === 'share' && p.permissions?.includes('r')),
    `the container does not hold a read permission the configuration took away (${JSON.stringify(held)})`,
  );
});
