// The compose stack's policy (deploy/compose/policy.yaml), started by the built CLI with local
// stand-ins for the stack's servers and nothing else changed: HAPI → Medplum's FHIR router
// (test/helpers/upstream.ts), MinIO → s3rver (SigV4 checked), the volumes the one-shots fill →
// the same one-shots' output (init-secrets.sh for TLS, `keygen` for the key pair), the credentials
// file → one with s3rver's key. A Binary uploaded with a `token` from that key pair comes back
// byte for byte, over TLS, and its bytes are in the S3 server, put there with signed requests.
import t from 'tap';
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { parse } from 'yaml';
import { ROOT, ensureBuilt, spawnCli, tempDir } from '../helpers/cli.js';
import { PDF } from '../helpers/content.js';
import { startS3Server } from '../helpers/s3-server.js';
import { startUpstream } from '../helpers/upstream.js';

ensureBuilt();

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function request(
  url: string,
  ca: Buffer,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: opts.method ?? 'GET', headers: opts.headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The policy as the stack mounts it: /etc/fhir-binary-gateway/{policy.yaml,tls/,keys/}. */
async function layOut(t: Test, dir: string): Promise<{ policy: Record<string, any>; ca: Buffer }> {
  // TLS: what the init-secrets one-shot makes (a self-signed certificate for localhost/127.0.0.1).
  const init = join(dir, 'init');
  await promisify(execFile)('sh', [join(ROOT, 'deploy/compose/init-secrets.sh')], { env: { ...process.env, ROOT: init } });
  mkdirSync(join(dir, 'etc', 'tls'), { recursive: true });
  for (const f of ['tls.crt', 'tls.key']) copyFileSync(join(init, 'secrets', 'tls', f), join(dir, 'etc', 'tls', f));
  // Keys: what the gateway-keys one-shot makes.
  const keygen = spawnCli(t, ['keygen', '--out', join(dir, 'etc', 'keys')], {}, dir);
  t.equal(await keygen.exited, 0, keygen.stderr);
  const policy = parse(readFileSync(join(ROOT, 'deploy/compose/policy.yaml'), 'utf8')) as Record<string, any>;
  return { policy, ca: readFileSync(join(dir, 'etc', 'tls', 'tls.crt')) };
}

t.test('the compose policy, on local servers, stores a Binary in S3 and reads it back byte-identical', async (t) => {
  const dir = tempDir(t, 'fbg-compose-policy-');
  const { policy, ca } = await layOut(t, dir);
  t.equal(policy['storage'].driver, 's3');
  const s3 = await startS3Server(t, policy['storage'].s3.bucket);
  const up = await startUpstream(t);

  // The substitutions, and only these: where the servers are; the listeners on free loopback ports.
  policy['server'].host = '127.0.0.1';
  policy['server'].port = 0;
  policy['server'].spoolDir = join(dir, 'spool');
  mkdirSync(policy['server'].spoolDir);
  policy['upstream'].url = up.url;
  policy['storage'].s3.endpoint = s3.endpoint;
  policy['observability'].listen = { host: '127.0.0.1', port: 0 };
  const file = join(dir, 'etc', 'policy.yaml');
  writeFileSync(file, JSON.stringify(policy, null, 2));
  // The credentials file the stack's AWS_SHARED_CREDENTIALS_FILE names, with the S3 server's key.
  writeFileSync(
    join(dir, 'aws-credentials'),
    `[default]\naws_access_key_id=${s3.credentials.accessKeyId}\naws_secret_access_key=${s3.credentials.secretAccessKey}\n`,
  );
  const env = {
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials'),
    AWS_CONFIG_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
  };

  const gw = spawnCli(t, ['--config', file], env, dir);
  const listening = await gw.waitFor('the listening line', () => gw.logs().find((l) => l['msg'] === 'gateway listening'));
  t.match(listening, { tls: true, publicBaseUrl: 'https://localhost:8443/fhir' });
  const base = `https://${String(listening['listen'])}/fhir`;

  const token = spawnCli(
    t,
    ['token', '--config', file, '--key', join(dir, 'etc', 'keys', 'key.json'), '--scope', 'user/Binary.cruds files.write fhir.write'],
    {},
    dir,
  );
  t.equal(await token.exited, 0, token.stderr);
  const auth = { authorization: `Bearer ${token.stdout.trim()}` };

  const metadata = await request(`${base}/metadata`, ca);
  t.equal(metadata.status, 200, 'the CapabilityStatement is public (over TLS, with the stack’s certificate)');
  const anonymous = await request(`${base}/Binary`, ca, { method: 'POST', headers: { 'content-type': 'application/pdf' }, body: PDF(10) });
  t.equal(anonymous.status, 401, 'a write needs a token');

  const content = PDF(300_000);
  const created = await request(`${base}/Binary`, ca, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/pdf' },
    body: content,
  });
  t.equal(created.status, 201, created.body.toString());
  const location = String(created.headers.location);
  t.match(location, /^https:\/\/localhost:8443\/fhir\/Binary\/[^/]+\/_history\/1$/, 'Location names the public base');
  const id = location.split('/')[5];

  const read = await request(`${base}/Binary/${id}`, ca, { headers: { ...auth, accept: 'application/pdf' } });
  t.equal(read.status, 200);
  t.equal(read.headers['content-type'], 'application/pdf');
  t.ok(read.body.equals(content), `byte-identical (${read.body.length} of ${content.length} bytes)`);

  // In the S3 server: an object holding exactly the content, written with SigV4-signed requests.
  const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials });
  t.teardown(() => client.destroy());
  const keys = ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket }))).Contents ?? []).map((o) => o.Key!);
  const holding: string[] = [];
  for (const Key of keys) {
    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key }));
    if (Buffer.from(await got.Body!.transformToByteArray()).equals(content)) holding.push(Key);
  }
  t.equal(holding.length, 1, `one object holds the content (${holding.join(', ')})`);
  const puts = s3.requests.filter((r) => r.method === 'PUT' && r.path === `/${s3.bucket}/${holding[0]}`);
  t.ok(puts.length > 0 && puts.every((r) => r.authenticated && r.status === 200), 'put with the credentials file’s key, signed');
  t.notOk(
    up.requests.some((r) => r.bodyBytes >= content.length),
    'the upstream never received the bytes',
  );

  gw.child.kill('SIGTERM');
  t.equal(await gw.exited, 0, 'stops cleanly');
});
