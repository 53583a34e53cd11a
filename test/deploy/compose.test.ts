// deploy/docker-compose.yml as Compose reads it (`docker-compose config`), the one-shot that makes
// its secrets (deploy/compose/init-secrets.sh, run here outside a container), and the image it
// builds (deploy/Dockerfile, .dockerignore): what docs/deployment.md promises of each.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { ROOT, tempDir } from '../helpers/cli.js';

const COMPOSE_FILE = join(ROOT, 'deploy', 'docker-compose.yml');
const run = promisify(execFile);

interface Service {
  image?: string;
  build?: unknown;
  ports?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  read_only?: boolean;
  cap_drop?: string[];
  security_opt?: string[];
  tmpfs?: string[];
  healthcheck?: { test?: string[]; disable?: boolean };
  networks?: Record<string, unknown>;
  network_mode?: string;
  depends_on?: Record<string, { condition: string }>;
}

function hasDockerCompose(): boolean {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const dockerCompose = hasDockerCompose();
if (!dockerCompose && process.env['CI']) throw new Error('docker-compose is not installed (.ci/run installs it)');

t.test(
  'docker-compose config accepts the file; what it renders keeps the promises',
  { skip: !dockerCompose && 'no docker-compose here' },
  async (t) => {
    // No secret, certificate or key file has to exist for this: the stack makes them itself.
    const { stdout } = await run('docker-compose', ['-f', COMPOSE_FILE, 'config'], { cwd: ROOT });
    const config = parse(stdout) as { services: Record<string, Service>; networks: Record<string, { internal?: boolean }> };
    const services = config.services;
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

    t.same(Object.keys(services).sort(), ['gateway', 'gateway-keys', 'hapi', 'init-secrets', 'minio', 'minio-init', 'postgres']);
    for (const [name, s] of Object.entries(services)) {
      const image = s.image ?? '';
      const tag = /:([^/:@]+)$/.exec(image)?.[1];
      t.ok(tag, `${name}: ${image} has a tag`);
      t.notMatch(tag ?? '', /^(latest|stable|edge|main)$/, `${name}: not a moving tag`);
      if (name !== 'gateway') t.notOk(s.ports, `${name} publishes no port`);
      for (const [k, v] of Object.entries(s.environment ?? {})) {
        if (/PASSWORD|SECRET|ACCESS_KEY|TOKEN/i.test(k)) t.match(k, /_FILE$/, `${name}: ${k} names a file, never a value (${v})`);
      }
    }

    const gw = services['gateway'];
    t.equal(gw.image, `fhir-binary-gateway:${version}`, 'the gateway image is tagged with the package version');
    t.ok(gw.build, 'and built from this repository');
    t.same(gw.ports, ['127.0.0.1:8443:8443/tcp'], "one port, on the host's loopback");
    t.equal(gw.read_only, true, 'read-only root filesystem');
    t.same(gw.cap_drop, ['ALL']);
    t.ok(gw.security_opt?.includes('no-new-privileges:true'));
    t.match(gw.tmpfs, [/^\/tmp:size=\d+[kmg]?,/], 'the spool is a size-limited tmpfs');
    t.same(
      Object.fromEntries(Object.entries(gw.depends_on ?? {}).map(([k, v]) => [k, v.condition])),
      {
        'init-secrets': 'service_completed_successfully',
        'gateway-keys': 'service_completed_successfully',
        'minio-init': 'service_completed_successfully',
        hapi: 'service_started',
      },
      'the gateway waits for the one-shots',
    );
    t.same(services['gateway-keys'].image, gw.image, 'keygen runs the same image');
    t.equal(services['hapi'].depends_on?.['postgres']?.condition, 'service_healthy');
    t.equal(services['minio-init'].depends_on?.['minio']?.condition, 'service_healthy');
    for (const name of ['postgres', 'minio']) t.ok(services[name].healthcheck?.test, `${name} has a healthcheck`);

    // Where the image looks for its policy (the Dockerfile's GATEWAY_CONFIG) is where the file is mounted.
    const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
    const configPath = /GATEWAY_CONFIG=(\S+)/.exec(dockerfile)?.[1];
    t.ok(
      gw.volumes?.some((v) => v.endsWith(`deploy/compose/policy.yaml:${configPath}:ro`)),
      `compose/policy.yaml is mounted read-only at ${configPath}`,
    );

    // The names the policy and the other services must agree on.
    const policy = parse(readFileSync(join(ROOT, 'deploy/compose/policy.yaml'), 'utf8')) as {
      upstream: { url: string; aliases: string[] };
      storage: { s3: { bucket: string; endpoint: string } };
      server: { publicBaseUrl: string; port: number };
    };
    t.equal(services['minio-init'].environment?.['BUCKET'], policy.storage.s3.bucket, 'minio-init creates the bucket the policy names');
    t.equal(policy.upstream.url, 'http://hapi:8080/fhir');
    t.equal(policy.storage.s3.endpoint, 'http://minio:9000');
    t.equal(services['hapi'].environment?.['hapi.fhir.server_address'], `${policy.server.publicBaseUrl}/`, 'HAPI names the public base');
    t.same(policy.upstream.aliases, [policy.server.publicBaseUrl], 'and the gateway reads links on it as its own');
    t.match(gw.ports?.[0], `:${policy.server.port}/tcp`);

    // Networks: the backend is internal and the gateway is the only service on another one.
    t.equal(config.networks['backend']?.internal, true);
    for (const [name, s] of Object.entries(services)) {
      const nets = s.network_mode ? [s.network_mode] : Object.keys(s.networks ?? { default: null });
      t.same(nets, name === 'gateway' ? ['backend', 'frontend'] : s.network_mode ? ['none'] : ['backend'], `${name}: ${nets.join(', ')}`);
    }
  },
);

t.test('init-secrets.sh: makes every secret and the certificate once, and never replaces one', async (t) => {
  const root = tempDir(t, 'fbg-init-secrets-');
  const script = join(ROOT, 'deploy/compose/init-secrets.sh');
  const first = await run('sh', [script], { env: { ...process.env, ROOT: root } });
  t.match(first.stdout, /created \/secrets\/tls\/tls\.crt/);
  const s = (p: string) => join(root, 'secrets', p);
  const files = ['db/spring.datasource.password', 'minio/root-user', 'minio/root-password', 's3/credentials', 'tls/tls.crt', 'tls/tls.key'];
  const before = Object.fromEntries(files.map((f) => [f, readFileSync(s(f), 'utf8')]));
  t.match(before['db/spring.datasource.password'], /^[0-9a-f]{32}$/, 'a random password, no newline (read as it is)');
  t.match(before['minio/root-password'], /^[0-9a-f]{32}$/);
  t.match(before['s3/credentials'], /^\[default\]\naws_access_key_id=fbg-[0-9a-f]{16}\naws_secret_access_key=[0-9a-f]{32}\n$/);
  const cert = new X509Certificate(before['tls/tls.crt']);
  t.match(cert.subjectAltName, /DNS:localhost/);
  t.match(cert.subjectAltName, /IP Address:127\.0\.0\.1/);
  t.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(before['tls/tls.key'])), 'the key is the certificate’s');
  const mode = (f: string) => statSync(s(f)).mode & 0o777;
  t.equal(mode('db/spring.datasource.password'), 0o444, 'shared by Postgres and HAPI (different users)');
  t.equal(mode('minio/root-password'), 0o400);
  t.equal(mode('s3/credentials'), 0o400);
  t.equal(mode('tls/tls.key'), 0o400);
  if (process.getuid?.() === 0) {
    t.equal(statSync(s('tls/tls.key')).uid, 1000, "the TLS key is the gateway's user's");
    t.equal(statSync(s('s3/credentials')).uid, 1000);
    t.equal(statSync(s('keys')).uid, 1000, 'keygen (as the gateway user) may write the key set');
  }

  const second = await run('sh', [script], { env: { ...process.env, ROOT: root } });
  t.equal(second.stdout, '', 'a second run creates nothing');
  t.same(Object.fromEntries(files.map((f) => [f, readFileSync(s(f), 'utf8')])), before, 'and changes nothing');
});

t.test('the image: pinned Node LTS, numeric user, production dependencies, its own healthcheck', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  t.match(dockerfile, /^ARG NODE_IMAGE=node:(\d+)\.(\d+)-bookworm-slim$/m, 'Node pinned to a minor');
  const major = Number(/^ARG NODE_IMAGE=node:(\d+)\./m.exec(dockerfile)?.[1]);
  t.ok(major >= 24 && major % 2 === 0, `an LTS line (${major})`);
  const froms = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
  t.same(
    froms.filter((f) => f !== '${NODE_IMAGE}'),
    [],
    'every stage is the pinned image',
  );
  t.match(dockerfile, /^USER 1000:1000$/m, 'a numeric user (runAsNonRoot can check it)');
  t.match(dockerfile, /GATEWAY_CONFIG=\/etc\/fhir-binary-gateway\/policy\.yaml/);
  t.match(dockerfile, /^\s*CMD \["node", "bin\/fhir-binary-gateway\.js", "health"\]$/m, 'HEALTHCHECK runs `health`');
  t.match(dockerfile, /npm ci --omit=dev/);
  t.match(dockerfile, /^ENTRYPOINT \["node", "bin\/fhir-binary-gateway\.js"\]$/m);

  // .dockerignore is an allow-list; everything the Dockerfile copies from the context is let in.
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  t.equal(ignore[0], '*', 'everything is out unless let in');
  const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/));
  t.same([...new Set(copied)].sort(), [...allowed].sort(), 'exactly what the build copies is let in');
  for (const never of ['**/node_modules', '**/data', '**/*.blob', '**/.git', '**/secrets'])
    t.ok(ignore.includes(never), `${never} stays out`);
});
