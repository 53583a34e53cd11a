// Every policy the repository ships passes `fhir-binary-gateway --check` (the built CLI), laid out
// the way its deployment lays it out: files that exist only there (TLS, keys) are made in a
// temporary directory beside a copy of the policy, under the relative paths the policy names.
// policies/default.yaml, the embedded default, deliberately refuses until it is filled in: it
// fails with exactly the "fill in auth" problems, and once they are filled in, the upstream one.
import t from 'tap';
import type { Test } from 'tap';
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { EX_CONFIG, ROOT, ensureBuilt, spawnCli, tempDir } from '../helpers/cli.js';
import { makeSelfSignedCert } from '../helpers/tls.js';

ensureBuilt();

async function check(t: Test, file: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  const cli = spawnCli(t, ['--check', '--config', file], env, dirname(file));
  const code = await cli.exited;
  return { code, out: cli.stdout, err: cli.stderr };
}

/** A certificate and key at dir/tls.crt and dir/tls.key. */
function tlsFiles(t: Test, dir: string): void {
  const cert = makeSelfSignedCert(t);
  mkdirSync(dir, { recursive: true });
  copyFileSync(cert.certFile, join(dir, 'tls.crt'));
  copyFileSync(cert.keyFile, join(dir, 'tls.key'));
}

async function keygen(t: Test, dir: string): Promise<void> {
  const cli = spawnCli(t, ['keygen', '--out', dir], {}, ROOT);
  t.equal(await cli.exited, 0, `keygen: ${cli.stderr}`);
}

t.test('policies/examples/dev.yaml', async (t) => {
  const file = join(ROOT, 'policies/examples/dev.yaml');
  const r = await check(t, file);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${file}: OK (1 rules, storage filesystem, 1 keys)\n`);
});

t.test('policies/examples/strict-hipaa.yaml, its TLS files where it names them', async (t) => {
  // It names /etc/fhir-binary-gateway/tls.*: a copy names the same files beside it.
  const dir = tempDir(t);
  cpSync(join(ROOT, 'policies/examples'), dir, { recursive: true });
  const file = join(dir, 'strict-hipaa.yaml');
  const text = readFileSync(file, 'utf8');
  t.match(text, /certFile: \/etc\/fhir-binary-gateway\/tls\.crt/);
  writeFileSync(file, text.replace(/\/etc\/fhir-binary-gateway\//g, './'));
  tlsFiles(t, dir);
  const r = await check(t, file);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${file}: OK (3 rules, storage filesystem)\n`, 'its included rules counted');
});

t.test('deploy/compose/policy.yaml, with the volumes the stack mounts beside it', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'policy.yaml');
  copyFileSync(join(ROOT, 'deploy/compose/policy.yaml'), file);
  const missing = await check(t, file);
  t.equal(missing.code, EX_CONFIG, 'without the TLS files and keys the stack makes: refused');
  t.match(missing.err, `${file}: /server/tls/certFile: file not found: ${join(dir, 'tls/tls.crt')}`);
  t.match(missing.err, `/auth/jwksFile`);
  tlsFiles(t, join(dir, 'tls'));
  await keygen(t, join(dir, 'keys'));
  const r = await check(t, file);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${file}: OK (4 rules, storage s3, 1 keys)\n`);
});

t.test("deploy/kubernetes/sidecar.yaml's policy ConfigMap, with the TLS Secret where the pod mounts it", async (t) => {
  const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/sidecar.yaml'), 'utf8')).map(
    (d) => d.toJS() as { kind: string; data?: Record<string, string> },
  );
  const cm = docs.find((d) => d.kind === 'ConfigMap');
  const policy = cm?.data?.['policy.yaml'];
  t.ok(policy, 'the ConfigMap holds policy.yaml');
  // The pod: /etc/fhir-binary-gateway/policy/policy.yaml (ConfigMap), /etc/fhir-binary-gateway/tls (Secret).
  const dir = tempDir(t);
  const file = join(dir, 'policy', 'policy.yaml');
  mkdirSync(dirname(file));
  writeFileSync(file, policy!);
  tlsFiles(t, join(dir, 'tls'));
  const r = await check(t, file);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${file}: OK (4 rules, storage s3)\n`);
});

t.test('policies/default.yaml refuses until upstream and auth are filled in, and for nothing else', async (t) => {
  const file = join(ROOT, 'policies/default.yaml');
  let r = await check(t, file);
  t.equal(r.code, EX_CONFIG);
  t.equal(
    r.err,
    [
      'Invalid configuration:',
      `  ${file}: /auth: jwksUri or jwksFile is required while any rule requires auth, smart or scopes`,
      `  ${file}: /auth/issuers: must list at least one issuer while any rule requires auth, smart or scopes`,
      `  ${file}: /auth/audiences: must list at least one audience while any rule requires auth, smart or scopes`,
      '',
    ].join('\n'),
    'exactly the auth section to fill in',
  );

  // Filled in as its comments say: the upstream is the one problem left, and GATEWAY_UPSTREAM_URL solves it.
  const dir = tempDir(t);
  const filled = join(dir, 'policy.yaml');
  const doc = parse(readFileSync(file, 'utf8')) as { auth: Record<string, unknown> };
  doc.auth = { ...doc.auth, issuers: ['https://auth.example.org/realms/clinical'], audiences: ['fhir-binary-gateway'] };
  doc.auth['jwksUri'] = 'https://auth.example.org/realms/clinical/protocol/openid-connect/certs';
  writeFileSync(filled, JSON.stringify(doc));
  r = await check(t, filled);
  t.equal(r.code, EX_CONFIG);
  t.equal(r.err, `Invalid configuration:\n  ${filled}: /upstream/url: is required (or set GATEWAY_UPSTREAM_URL)\n`);
  r = await check(t, filled, { GATEWAY_UPSTREAM_URL: 'http://hapi:8080/fhir' });
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `${filled}: OK (4 rules, storage filesystem)\n`);
});
