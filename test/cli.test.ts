// The service as an operator runs it: demo mode, configuration errors, --help, health, signals and reload.
import t from 'tap';
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AUDIENCE, ISSUER, makeKey, mintToken } from './helpers/auth.js';
import { EX_CONFIG, ROOT, ensureBuilt, spawnCli, tempDir, type Cli } from './helpers/cli.js';
import { startUpstream } from './helpers/upstream.js';
import { PDF } from './helpers/content.js';

ensureBuilt();

async function stop(t: Test, cli: Cli): Promise<void> {
  cli.child.kill('SIGTERM');
  t.equal(await cli.exited, 0, 'exits 0 on SIGTERM');
}

t.test('demo mode on GATEWAY_PORT=0: the printed curl command works', async (t) => {
  const tmp = tempDir(t);
  const cli = spawnCli(t, [], { GATEWAY_PORT: '0', TMPDIR: tmp }, tmp);
  const curl = await cli.waitFor('the curl command', () => /^curl .*$/m.exec(cli.stdout)?.[0], 60_000);
  const m = /^curl -s -H "Authorization: Bearer ([\w-]+\.[\w-]+\.[\w-]+)" (http:\/\/127\.0\.0\.1:(\d+))\/Patient\/([\w-]+)$/.exec(curl);
  t.ok(m, `the printed command has the expected shape: ${curl.slice(0, 60)}…`);
  if (!m) return;
  const [, token, base, port, id] = m as unknown as [string, string, string, string, string];
  t.not(Number(port), 0, 'the real port is printed, not 0');
  t.match(cli.stdout, `gateway:  ${base}`, 'the banner names the same base');
  t.match(cli.stdout, /DEMO MODE \(not for production\)/);

  // Run the command exactly as printed.
  const { stdout } = await promisify(execFile)('sh', ['-c', curl], { cwd: tmp });
  const patient = JSON.parse(stdout) as { resourceType: string; id: string; name: { family: string }[] };
  t.match(patient, { resourceType: 'Patient', id, name: [{ family: 'Demo', given: ['Ada'] }] });

  // The token is what grants it: without it, 401.
  const anon = await fetch(`${base}/Patient/${id}`);
  t.equal(anon.status, 401);
  await anon.arrayBuffer();
  const withToken = await fetch(`${base}/Patient?family=Demo`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(withToken.status, 200, 'the token also searches');
  await withToken.arrayBuffer();

  // The files GraphQL API is on, with its GraphiQL page, and the printed token reaches it.
  t.match(cli.stdout, `GraphQL:  ${base}/graphql`);
  const page = await fetch(`${base}/graphql`, { headers: { accept: 'text/html' } });
  t.match(await page.text(), /GraphiQL/, 'a browser gets GraphiQL');
  const typename = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ __typename }' }),
  });
  t.same(await typename.json(), { data: { __typename: 'Query' } }, 'the demo token queries it');
  // Signed file URLs are on (a generated key): an upload's URL serves the file with no token.
  const pdf = PDF(2_000);
  const form = new FormData();
  const query = `mutation($f: Upload!) { uploadFile(forEntity: "Patient/${id}", data: $f, contentType: "application/pdf") { url } }`;
  form.append('operations', JSON.stringify({ query, variables: { f: null } }));
  form.append('map', JSON.stringify({ 0: ['variables.f'] }));
  form.append('0', new Blob([pdf]), 'a.pdf');
  const up = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'graphql-require-preflight': '1' },
    body: form,
  });
  const url = ((await up.json()) as { data?: { uploadFile?: { url?: string } } }).data?.uploadFile?.url;
  t.match(url, `${base}/_file/Patient/${id}/`, 'an upload gets a signed URL');
  const viaUrl = await fetch(url ?? base);
  t.same(Buffer.from(await viaUrl.arrayBuffer()), pdf, 'which serves the file with no token');

  const warn = await cli.waitFor('the DEMO MODE warning line', () =>
    cli.logs().find((l) => l['level'] === 'warn' && String(l['msg']).includes('DEMO MODE')),
  );
  t.match(warn, { demo: true, msg: /Not for production/ });
  const listening = await cli.waitFor('the listening line', () => cli.logs().find((l) => l['msg'] === 'gateway listening'));
  t.equal(listening['url'], base, 'listening on the printed address');
  t.match(String(listening['listen']), /^127\.0\.0\.1:\d+$/, 'bound to loopback only');
  for (const l of cli.logs()) t.notOk(JSON.stringify(l).includes(token), 'the token is printed for the user, never logged');

  await stop(t, cli);
  t.same(readdirSync(tmp), [], "the demo's key directory is removed on exit");
});

t.test('an upstream URL without a config file does not fall back to demo mode', async (t) => {
  const tmp = tempDir(t);
  const cli = spawnCli(t, [], { GATEWAY_UPSTREAM_URL: 'http://127.0.0.1:9/fhir', GATEWAY_PORT: '0', TMPDIR: tmp }, tmp);
  t.equal(await cli.exited, EX_CONFIG, 'exit code 78 (EX_CONFIG)');
  // The gateway's own fatal errors are one JSON line, like the rest of its log.
  t.equal(cli.stderr.trimEnd().split('\n').length, 1, 'one line');
  t.match(JSON.parse(cli.stderr), { level: 'fatal', msg: 'invalid configuration: the gateway did not start', problems: Array });
  t.match(cli.stderr, '(embedded defaults): /auth: jwksUri or jwksFile is required');
  t.match(cli.stderr, '/auth/issuers');
  t.notMatch(cli.stdout + cli.stderr, /DEMO MODE/);
  t.same(readdirSync(tmp), [], 'no demo key was generated');
});

t.test('a bad --config file: exit 78, stderr names the file and the key path', async (t) => {
  const tmp = tempDir(t);
  const typo = join(tmp, 'typo.yaml');
  writeFileSync(typo, 'upstream: { url: http://127.0.0.1:9/fhir }\nserver:\n  htps: true\n');
  let cli = spawnCli(t, ['--config', typo], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, `${typo}: /server: unknown key 'htps'`);
  t.notMatch(cli.stdout, /DEMO MODE/);

  const syntax = join(tmp, 'syntax.yaml');
  writeFileSync(syntax, 'upstream:\n  url: [http://127.0.0.1:9/fhir\n');
  cli = spawnCli(t, ['--config', syntax], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, new RegExp(`${syntax.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `), 'file:line:col');

  // The relative path as given is resolved from the working directory and reported absolute.
  cli = spawnCli(t, [], { GATEWAY_CONFIG: 'typo.yaml' }, tmp);
  t.equal(await cli.exited, EX_CONFIG, 'GATEWAY_CONFIG is read too');
  t.match(cli.stderr, `${typo}: /server: unknown key 'htps'`);

  cli = spawnCli(t, ['--config', join(tmp, 'missing.yaml')], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, `${join(tmp, 'missing.yaml')}: cannot be read (ENOENT)`);
});

t.test('a bad GATEWAY_PORT in demo mode is a config error, and the demo is cleaned up', async (t) => {
  const tmp = tempDir(t);
  const cli = spawnCli(t, [], { GATEWAY_PORT: 'eighty', TMPDIR: tmp }, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, '(demo mode): /server/port: must be integer (set by GATEWAY_PORT)');
  t.same(readdirSync(tmp), [], "the demo key's temp directory is removed");
});

t.test('health: 0 when the configured listener answers /healthz, 1 when nothing does', async (t) => {
  const tmp = tempDir(t);
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => res.writeHead(req.url === '/healthz' ? 200 : 404).end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as { port: number }).port;
  const policy = (listen: string) =>
    `upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [i], audiences: [a], jwksFile: ${join(ROOT, 'policies/examples/dev-jwks.json')} }\n${listen}`;
  writeFileSync(join(tmp, 'ops.yaml'), policy(`observability: { listen: { host: 127.0.0.1, port: ${port} } }\n`));
  let cli = spawnCli(t, ['health', '--config', join(tmp, 'ops.yaml')], {}, tmp);
  t.equal(await cli.exited, 0, 'the observability listener answers');
  t.same(JSON.parse(cli.stdout), { healthy: true, status: 200 });
  writeFileSync(join(tmp, 'main.yaml'), policy(`server: { host: 0.0.0.0, port: ${port} }\n`));
  cli = spawnCli(t, ['health', '--config', join(tmp, 'main.yaml')], {}, tmp);
  t.equal(await cli.exited, 0, 'without one, the main listener (0.0.0.0 asked on loopback)');
  await new Promise<void>((r) => server.close(() => r()));
  cli = spawnCli(t, ['health', '--config', join(tmp, 'ops.yaml')], {}, tmp);
  t.equal(await cli.exited, 1, 'nothing listening');
  t.match(
    JSON.parse(cli.stdout),
    { healthy: false, status: 0, error: /ECONNREFUSED/, target: /^127\.0\.0\.1:\d+$/ },
    'and says why, and whom it asked',
  );
});

t.test('--help', async (t) => {
  const tmp = tempDir(t);
  const cli = spawnCli(t, ['--help'], {}, tmp);
  t.equal(await cli.exited, 0);
  t.match(cli.stdout, /^Usage: fhir-binary-gateway \[--config FILE\]/);
  t.match(cli.stdout, /DEMO MODE/);
});

t.test('SIGHUP applies a valid changed file and keeps the old configuration on a broken one', async (t) => {
  const tmp = tempDir(t);
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  writeFileSync(join(tmp, 'jwks.json'), JSON.stringify({ keys: [key.publicJwk] }));
  const created = await fetch(`${up.url}/Patient`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Patient' }),
  });
  const { id } = (await created.json()) as { id: string };

  const file = join(tmp, 'gateway.yaml');
  const policy = (rules: string) =>
    [
      'server: { host: 127.0.0.1, port: 0 }',
      `upstream: { url: "${up.url}" }`,
      `auth: { issuers: ["${ISSUER}"], audiences: ["${AUDIENCE}"], jwksFile: ./jwks.json }`,
      `rules: ${rules}`,
      'defaultRule: { require: { https: false, auth: true, smart: true } }',
      '',
    ].join('\n');
  const publicReads =
    '[{ name: public-patient-reads, match: { interactions: [read], resourceTypes: [Patient] }, require: { auth: false, smart: false } }]';
  writeFileSync(file, policy('[]'));

  const cli = spawnCli(t, ['--config', file], {}, tmp);
  const listening = await cli.waitFor('the listening line', () => cli.logs().find((l) => l['msg'] === 'gateway listening'));
  const base = String(listening['url']);
  const status = async (path = `/Patient/${id}`, headers: Record<string, string> = {}) => {
    const r = await fetch(`${base}${path}`, { headers });
    await r.arrayBuffer();
    return r.status;
  };
  const token = await mintToken(key, { claims: { scope: 'user/Patient.r' } });
  t.equal(await status(), 401, 'initially a token is required');
  t.equal(await status(`/Patient/${id}`, { authorization: `Bearer ${token}` }), 200, 'and a token from the jwksFile works');

  let seen = 0;
  const hup = async (what: RegExp) => {
    const before = cli.logs().length;
    cli.child.kill('SIGHUP');
    const line = await cli.waitFor(`a log line matching ${what}`, () =>
      cli
        .logs()
        .slice(before)
        .find((l) => what.test(String(l['msg']))),
    );
    seen++;
    return line;
  };

  writeFileSync(file, policy(publicReads));
  await hup(/^configuration reloaded$/);
  t.equal(await status(), 200, 'the new rule applies after SIGHUP');

  writeFileSync(file, policy(publicReads).replace('rules:', 'rules: [\n'));
  const failedYaml = await hup(/reload failed/);
  t.equal(failedYaml['level'], 'error');
  t.match(failedYaml, { file, problems: [new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `)] });
  t.equal(await status(), 200, 'a YAML error keeps the previous configuration');

  writeFileSync(file, policy('[]').replace('https: false', 'htps: false'));
  const failedSchema = await hup(/reload failed/);
  t.match(failedSchema, { problems: [`${file}: /defaultRule/require: unknown key 'htps'`] });
  t.equal(await status(), 200, 'a schema error keeps the previous configuration');
  t.equal(await status('/metadata'), 401, 'and nothing else changed either');

  writeFileSync(file, policy('[]'));
  await hup(/^configuration reloaded$/);
  t.equal(await status(), 401, 'a later valid file is applied again');
  t.notOk(
    cli.logs().some((l) => String(l['msg']).includes('restart')),
    'no restart warning while server/upstream are unchanged',
  );

  // Listeners and the upstream are not rebuilt on reload: a change there is applied to nothing, and said so.
  writeFileSync(file, policy(publicReads).replace(`url: "${up.url}"`, `url: "${up.url}", timeoutMs: 1234`));
  const before = cli.logs().length;
  await hup(/^configuration reloaded$/);
  const warn = await cli.waitFor('the restart warning', () =>
    cli
      .logs()
      .slice(before)
      .find((l) => l['level'] === 'warn' && /restart/.test(String(l['msg']))),
  );
  t.same(warn['keys'], ['upstream.timeoutMs'], 'named by key');
  t.equal(await status(), 200, 'the rest of the file is applied');
  t.equal(seen, 5);

  // Turning the admin API on, or moving the audit trail, needs a restart too: said so.
  writeFileSync(
    file,
    `${policy(publicReads).replace(`url: "${up.url}"`, `url: "${up.url}", timeoutMs: 1234`)}admin: { enabled: true }\naudit: { destination: off }\n`,
  );
  const mark = cli.logs().length;
  await hup(/^configuration reloaded$/);
  const later = await cli.waitFor('the second restart warning', () =>
    cli
      .logs()
      .slice(mark)
      .find((l) => l['level'] === 'warn' && /restart/.test(String(l['msg']))),
  );
  t.same(later['keys'], ['upstream.timeoutMs', 'audit.destination', 'admin.enabled']);

  // The store too: a new bucket or directory is not silently ignored.
  writeFileSync(file, `${policy(publicReads)}storage: { filesystem: { directory: ./elsewhere } }\n`);
  const storeMark = cli.logs().length;
  await hup(/^configuration reloaded$/);
  const storeWarn = await cli.waitFor('the storage restart warning', () =>
    cli
      .logs()
      .slice(storeMark)
      .find((l) => l['level'] === 'warn' && /restart/.test(String(l['msg']))),
  );
  t.same(storeWarn['keys'], ['storage.filesystem.directory']);

  await stop(t, cli);
  t.match(cli.logs().at(-2), { msg: 'shutting down: draining', signal: 'SIGTERM' });
  t.match(cli.logs().at(-1), { msg: 'stopped', ms: Number }, 'a clean exit says so: the last line is flushed on exit');
});

t.test('SIGTERM drains; a second signal exits at once', async (t) => {
  const tmp = tempDir(t);
  const { createServer } = await import('node:http');
  // An upstream that never answers: the exchange stays under way.
  const hung = createServer(() => undefined);
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    hung.closeAllConnections();
    hung.close();
  });
  const port = (hung.address() as { port: number }).port;
  writeFileSync(
    join(tmp, 'policy.yaml'),
    [
      'server: { host: 127.0.0.1, port: 0, shutdownTimeoutMs: 60000 }',
      `upstream: { url: "http://127.0.0.1:${port}/fhir", timeoutMs: 60000 }`,
      `auth: { issuers: [i], audiences: [a], jwksFile: ${join(ROOT, 'policies/examples/dev-jwks.json')} }`,
      'rules: [{ name: open, match: { interactions: [capabilities] }, require: { auth: false, smart: false } }]',
      'defaultRule: { require: { https: false } }',
    ].join('\n'),
  );
  const cli = spawnCli(t, ['--config', join(tmp, 'policy.yaml')], {}, tmp);
  const listening = await cli.waitFor('the listening line', () => cli.logs().find((l) => l['msg'] === 'gateway listening'));
  const pending = fetch(`${String(listening['url'])}/metadata`).catch(() => 'cut');
  await new Promise((r) => setTimeout(r, 200));
  cli.child.kill('SIGTERM');
  await cli.waitFor('the draining line', () => cli.logs().find((l) => l['msg'] === 'shutting down: draining'));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(cli.child.exitCode, null, 'still draining: the exchange under way has its deadline');
  const started = performance.now();
  cli.child.kill('SIGINT');
  t.equal(await cli.exited, 130, 'the second signal (another one than the first) exits at once');
  t.ok(performance.now() - started < 3_000);
  t.ok(cli.logs().some((l) => l['msg'] === 'second signal: exiting at once' && l['level'] === 'warn' && l['signal'] === 'SIGINT'));
  t.equal(cli.logs().filter((l) => l['msg'] === 'shutting down: draining').length, 1, 'never taken for a first signal');
  t.notOk(
    cli.logs().some((l) => l['msg'] === 'stopped'),
    'not a clean stop',
  );
  t.equal(await pending, 'cut');
});
