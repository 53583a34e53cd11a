// The CLI's one-shot commands, run as built: --check, token, keygen, scrub, sweep (test/cli.test.ts has the service).
import t from 'tap';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EX_CONFIG, ROOT, ensureBuilt, spawnCli, tempDir } from './helpers/cli.js';
import { startUpstream } from './helpers/upstream.js';

ensureBuilt();

t.test('--check validates a policy without starting: 0 and one line, or 78 and every problem as text', async (t) => {
  const tmp = tempDir(t);
  let cli = spawnCli(t, ['--check', '--config', join(ROOT, 'policies/examples/dev.yaml')], {}, tmp);
  t.equal(await cli.exited, 0);
  t.equal(cli.stdout, `${join(ROOT, 'policies/examples/dev.yaml')}: OK (1 rules, storage filesystem, 1 keys)\n`);
  t.same(readdirSync(tmp), [], 'nothing written, nothing started');

  const bad = join(tmp, 'bad.yaml');
  writeFileSync(join(tmp, 'empty-jwks.json'), '{"keys":[]}');
  writeFileSync(
    bad,
    [
      'server: { tls: { certFile: missing.crt, keyFile: missing.key } }',
      'upstream: { url: http://127.0.0.1:9/fhir }',
      'auth: { issuers: [i], audiences: [a], jwksFile: empty-jwks.json }',
    ].join('\n'),
  );
  cli = spawnCli(t, ['--check', '--config', bad], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, /^Invalid configuration:\n/, 'text for a person, not a log line');
  t.match(cli.stderr, `${bad}: /server/tls/certFile: file not found: ${join(tmp, 'missing.crt')}`);
  t.match(cli.stderr, `${bad}: /server/tls/keyFile: file not found`);

  writeFileSync(bad, 'upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [i], audiences: [a], jwksFile: empty-jwks.json }\n');
  cli = spawnCli(t, ['--check', '--config', bad], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, `${bad}: /auth/jwksFile: ${join(tmp, 'empty-jwks.json')} holds no key: every token would be refused`);

  cli = spawnCli(t, ['--check', '--dry-run'], {}, tmp);
  t.equal(await cli.exited, 64, 'an option of another command is a usage error');
  for (const args of [['--chek'], ['--config'], ['scrub', '--bogus']]) {
    cli = spawnCli(t, args, {}, tmp);
    t.equal(await cli.exited, 64, `${args.join(' ')}: a usage error`);
    t.match(cli.stderr, /^fhir-binary-gateway: .*\n\nUsage/, `${args.join(' ')}: one line saying what, then the usage`);
  }
});

t.test('token mints a development token the shipped dev policy accepts', async (t) => {
  const tmp = tempDir(t);
  const dev = join(ROOT, 'policies/examples');
  const args = ['token', '--config', join(dev, 'dev.yaml'), '--key', join(dev, 'dev-key.json')];
  let cli = spawnCli(t, [...args, '--scope', 'user/Binary.r fhir.write', '--patient', 'p1', '--ttl', '600'], {}, tmp);
  t.equal(await cli.exited, 0, cli.stderr);
  const token = cli.stdout.trim();
  t.equal(cli.stdout, `${token}\n`, 'the token alone');
  const { createLocalJWKSet, jwtVerify } = await import('jose');
  const keys = createLocalJWKSet(JSON.parse(readFileSync(join(dev, 'dev-jwks.json'), 'utf8')) as { keys: [] });
  const { payload, protectedHeader } = await jwtVerify(token, keys, { issuer: 'http://localhost:9000', audience: 'fhir-binary-gateway' });
  t.match(payload, { scope: 'user/Binary.r fhir.write', patient: 'p1', sub: 'dev-user' });
  t.equal(payload.exp! - payload.iat!, 600);
  t.match(protectedHeader, { alg: 'ES256', kid: 'dev-key-1', typ: 'at+jwt' });

  cli = spawnCli(t, [...args, '--scope', 'x', '--ttl', '999999'], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, '--ttl must be whole seconds, 1 to 86400');
  cli = spawnCli(t, ['token', '--config', join(dev, 'dev.yaml'), '--key', join(dev, 'dev-jwks.json'), '--scope', 'x'], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG, 'a public key set cannot sign');
  t.match(cli.stderr, 'holds 0 private keys; one is needed');
  cli = spawnCli(t, ['token', '--key', join(dev, 'dev-key.json')], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG);
  t.match(cli.stderr, '--scope "SCOPES" is required');
});

t.test('keygen writes a key pair token signs with and a policy verifies with; a second run keeps it', async (t) => {
  const tmp = tempDir(t);
  const keys = join(tmp, 'keys');
  let cli = spawnCli(t, ['keygen', '--out', keys], {}, tmp);
  t.equal(await cli.exited, 0, cli.stderr);
  t.same(JSON.parse(cli.stdout), { written: [join(keys, 'jwks.json'), join(keys, 'key.json')] });
  t.equal(statSync(join(keys, 'key.json')).mode & 0o777, 0o600, 'the private key is owner-only');
  const publicSet = readFileSync(join(keys, 'jwks.json'), 'utf8');
  t.notMatch(publicSet, /"d"/, 'the public set holds no private part');
  writeFileSync(
    join(tmp, 'policy.yaml'),
    'upstream: { url: http://127.0.0.1:9/fhir }\nauth: { issuers: [urn:test], audiences: [gw], jwksFile: keys/jwks.json }\n',
  );
  cli = spawnCli(t, ['token', '--config', join(tmp, 'policy.yaml'), '--key', join(keys, 'key.json'), '--scope', 'user/*.rs'], {}, tmp);
  t.equal(await cli.exited, 0, cli.stderr);
  const { createLocalJWKSet, jwtVerify } = await import('jose');
  const { payload } = await jwtVerify(cli.stdout.trim(), createLocalJWKSet(JSON.parse(publicSet) as { keys: [] }), {
    issuer: 'urn:test',
    audience: 'gw',
  });
  t.equal(payload['scope'], 'user/*.rs');
  cli = spawnCli(t, ['keygen', '--out', keys], {}, tmp);
  t.equal(await cli.exited, 0);
  t.equal(readFileSync(join(keys, 'jwks.json'), 'utf8'), publicSet, 'kept as it was');
  cli = spawnCli(t, ['keygen'], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG, '--out is required');
});

t.test('scrub: a JSON summary on stdout, exit 0 when every blob is sound and 1 when one is not', async (t) => {
  const tmp = tempDir(t);
  const { FilesystemBlobStore } = await import('../src/storage/filesystem.js');
  const { Readable } = await import('node:stream');
  const blobs = join(tmp, 'blobs');
  const store = new FilesystemBlobStore({ directory: blobs });
  const ids: string[] = [];
  for (const n of [1000, 300_000]) {
    ids.push((await store.put(Readable.from([Buffer.alloc(n, 7)]), { contentType: 'application/octet-stream' })).id);
  }
  const file = join(tmp, 'gateway.yaml');
  // The deployment's own policy file: scrub reads its storage section.
  writeFileSync(
    file,
    [
      'upstream: { url: http://127.0.0.1:9/fhir }',
      'auth: { issuers: [https://idp.test], audiences: [fhir], jwksUri: https://idp.test/jwks }',
      `storage:\n  filesystem: { directory: ${blobs} }`,
      '',
    ].join('\n'),
  );

  let cli = spawnCli(t, ['scrub', '--config', file], {}, tmp);
  t.equal(await cli.exited, 0, 'sound: exit 0');
  t.match(JSON.parse(cli.stdout), {
    driver: 'filesystem',
    listed: 2,
    checked: 2,
    ok: 2,
    failed: 0,
    deleted: 0,
    bytes: 301_000,
    failures: [],
  });

  const bad = ids[1];
  const path = join(blobs, bad.slice(0, 2), bad.slice(2, 4), `${bad}.blob`);
  const { readFileSync } = await import('node:fs');
  const b = readFileSync(path);
  b[299_999] ^= 1;
  writeFileSync(path, b);
  cli = spawnCli(t, ['scrub', '--config', file], {}, tmp);
  t.equal(await cli.exited, 1, 'one altered: exit 1');
  const summary = JSON.parse(cli.stdout) as { failed: number; failures: { id: string; kind: string }[] };
  t.same([summary.failed, summary.failures[0].id, summary.failures[0].kind], [1, bad, 'content']);
  t.same(Object.keys(summary.failures[0]).sort(), ['id', 'kind', 'reason'], 'a failure is named, never shown');

  cli = spawnCli(t, ['scrub', '--config', file, '--since', `${new Date(Date.now() + 60_000).toISOString()}`], {}, tmp);
  t.equal(await cli.exited, 0, '--since: nothing that new');
  t.match(JSON.parse(cli.stdout), { listed: 2, checked: 0 });
  cli = spawnCli(t, ['scrub', '--config', file, '--sample', '2'], {}, tmp);
  t.equal(await cli.exited, EX_CONFIG, 'a bad --sample is a usage error');
  t.match(cli.stderr, /--sample/);
  cli = spawnCli(t, ['scrubb', '--config', file], {}, tmp);
  t.equal(await cli.exited, 64, 'an unknown command');
  t.match(cli.stderr, /Usage:/);
});

t.test('sweep: a JSON report; --dry-run changes nothing; a second sweep in the same period waits its turn', async (t) => {
  const tmp = tempDir(t);
  const up = await startUpstream(t);
  const { FilesystemBlobStore } = await import('../src/storage/filesystem.js');
  const { Readable } = await import('node:stream');
  const { readFileSync } = await import('node:fs');
  const blobs = join(tmp, 'blobs');
  const store = new FilesystemBlobStore({ directory: blobs });
  const { id } = await store.put(Readable.from([Buffer.from('left by a crash')]), { contentType: 'text/plain', intent: 'Binary' });
  const record = join(blobs, id.slice(0, 2), id.slice(2, 4), `${id}.json`);
  writeFileSync(
    record,
    JSON.stringify({ ...JSON.parse(readFileSync(record, 'utf8')), createdAt: new Date(Date.now() - 7_200_000).toISOString() }),
  );
  const file = join(tmp, 'gateway.yaml');
  writeFileSync(
    file,
    [
      `upstream: { url: ${up.url} }`,
      'auth: { issuers: [https://idp.test], audiences: [fhir], jwksUri: https://idp.test/jwks }',
      `server: { spoolDir: ${tmp} }`,
      // A week-long period: the test's own claim and the CLI's fall in the same one.
      'retention: { sweepPeriodMinutes: 10080 }',
      `audit: { destination: file, file: ${join(tmp, 'audit.jsonl')} }`,
      `storage:\n  filesystem: { directory: ${blobs} }`,
      '',
    ].join('\n'),
  );
  let cli = spawnCli(t, ['sweep', '--config', file, '--dry-run'], {}, tmp);
  t.equal(await cli.exited, 0);
  t.match(JSON.parse(cli.stdout), { driver: 'filesystem', dryRun: true, claimed: true, deleted: [id] });
  t.ok(await store.head(id), 'dry run: still there');
  const claim = `sweep-${Math.floor(Date.now() / 604_800_000)}`;
  t.ok(await store.claim(claim, 'another replica'), 'another replica is sweeping this period');
  cli = spawnCli(t, ['sweep', '--config', file], {}, tmp);
  t.equal(await cli.exited, 0, 'not an error');
  t.match(JSON.parse(cli.stdout), { claimed: false, deleted: [] });
  t.ok(await store.head(id), 'it did nothing');
  await store.unclaim(claim);
  cli = spawnCli(t, ['sweep', '--config', file], {}, tmp);
  t.equal(await cli.exited, 0);
  t.match(JSON.parse(cli.stdout), { claimed: true, deleted: [id] });
  t.equal(await store.head(id), undefined, 'the orphan is gone');
  const audited = readFileSync(join(tmp, 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(
    audited,
    [
      {
        audit: 1,
        action: 'delete',
        who: { system: 'sweeper' },
        what: { change: 'reconcile-delete', blobs: [{ action: 'delete', blob: id }] },
      },
    ],
    'the delete is audited, in the audit file',
  );
  cli = spawnCli(t, ['sweep', '--config', file, '--since', '2026-01-01'], {}, tmp);
  t.equal(await cli.exited, 64, 'scrub options on sweep: a usage error');
});
