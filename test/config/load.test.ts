import t from 'tap';
import type { Test } from 'tap';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { ConfigError } from '../../src/errors/catalogue.js';
import { DEFAULT_POLICY_FILE, embeddedDefaults } from '../../src/config/embedded.js';
import { buildConfig, loadConfig, type ConfigEnv } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';

const POLICIES = fileURLToPath(new URL('../../policies/', import.meta.url));
const noEmbedded = () => {
  throw new Error('the embedded defaults must not be used when a file is given');
};

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-config-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The least a valid configuration needs: an upstream and where tokens are verified. */
const minimal = (): Record<string, unknown> => ({
  upstream: { url: 'http://upstream.test/fhir' },
  auth: { issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' },
});

function build(raw: unknown, env: ConfigEnv = {}, origin = 'test.yaml', baseDir = '/cfg'): GatewayConfig {
  return buildConfig(raw, origin, baseDir, env);
}

/** The problems a configuration is refused with (fails the test when it is accepted). */
function problems(t: Test, fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) {
      t.equal(err.message, `Invalid configuration:\n  ${err.problems.join('\n  ')}`, 'the message lists every problem');
      return [...err.problems];
    }
    t.fail(`expected a ConfigError, got ${String(err)}`);
    return [];
  }
  t.fail('expected the configuration to be refused');
  return [];
}

const write = (dir: string, name: string, text: string) => {
  const file = join(dir, name);
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, text);
  return file;
};

t.test('defaults are applied', async (t) => {
  const c = build(minimal());
  t.equal(c.server.host, '0.0.0.0');
  t.equal(c.server.port, 8080);
  t.same(c.server.trustedProxies, []);
  t.equal(c.server.tls, undefined, 'no TLS unless configured');
  t.equal(c.upstream.connectTimeoutMs, 5000);
  t.equal(c.upstream.timeoutMs, 60000);
  t.equal(c.upstream.rejectUnauthorized, true);
  t.equal(c.auth.clockToleranceSeconds, 30);
  t.same(c.auth.algorithms, ['RS256', 'PS256', 'ES256', 'EdDSA']);
  t.equal(c.auth.patientClaim, 'patient');
  t.same(c.auth.tokenCache, { maxEntries: 10000, maxAgeSeconds: 60 });
  t.same(c.include, []);
  t.same(c.rules, []);
  t.same(c.defaultRule, {
    require: { https: true, auth: true, scopes: [], smart: true, ipAllow: [], ipDeny: [] },
    limits: { maxRequestBytes: 10 * 1024 * 1024 },
    forwardAuthorization: false,
  });
  t.equal(c.bundles.maxEntries, 1000);
  t.equal(c.logging.level, 'info');
  t.equal(c.content.cacheControl, 'no-store');

  const partial = build({ ...minimal(), defaultRule: { require: { https: false } } });
  t.same(
    partial.defaultRule.require,
    { https: false, auth: true, scopes: [], smart: true, ipAllow: [], ipDeny: [] },
    'defaults fill in around what is set',
  );
  t.equal(partial.defaultRule.limits.maxRequestBytes, 10485760);

  const rule = build({ ...minimal(), rules: [{ name: 'r', match: { interactions: ['read'] } }] }).rules[0];
  t.equal(rule.require, undefined, 'rules get no defaults: unset fields inherit from defaultRule at match time');
  t.equal(rule.limits, undefined);
});

t.test('TLS: minVersion defaults to TLSv1.3; paths resolve against the config file', async (t) => {
  const dir = tempDir(t);
  write(dir, 'certs/tls.crt', 'cert');
  write(dir, 'certs/tls.key', 'key');
  write(dir, 'keys/jwks.json', '{"keys":[]}');
  const file = write(
    dir,
    'conf/gateway.yaml',
    [
      'upstream: { url: http://u.test/fhir }',
      'auth: { issuers: [i], audiences: [a], jwksFile: ../keys/jwks.json }',
      'server:',
      '  spoolDir: ./spool',
      '  tls: { certFile: ../certs/tls.crt, keyFile: ../certs/tls.key }',
    ].join('\n'),
  );
  const elsewhere = tempDir(t);
  const cwd = process.cwd();
  process.chdir(elsewhere); // relative to the file, not to where the gateway was started
  t.teardown(() => process.chdir(cwd));
  const { config, file: loadedFrom } = loadConfig(file, {}, noEmbedded);
  t.equal(loadedFrom, file);
  t.same(config.server.tls, { certFile: join(dir, 'certs/tls.crt'), keyFile: join(dir, 'certs/tls.key'), minVersion: 'TLSv1.3' });
  t.equal(config.auth.jwksFile, join(dir, 'keys/jwks.json'));
  t.equal(config.server.spoolDir, join(dir, 'conf/spool'));

  // A relative --config path is taken from the working directory.
  process.chdir(dir);
  t.equal(loadConfig('conf/gateway.yaml', {}, noEmbedded).file, file);

  // Absolute paths stay as they are; TLSv1.2 may be chosen; a missing file is reported.
  const abs = build(
    { ...minimal(), server: { tls: { certFile: join(dir, 'certs/tls.crt'), keyFile: join(dir, 'certs/tls.key'), minVersion: 'TLSv1.2' } } },
    {},
    'x.yaml',
    '/nowhere',
  );
  t.equal(abs.server.tls?.certFile, join(dir, 'certs/tls.crt'));
  t.equal(abs.server.tls?.minVersion, 'TLSv1.2');
  t.same(
    problems(t, () => build({ ...minimal(), server: { tls: { certFile: 'tls.crt', keyFile: 'tls.key' } } }, {}, 'x.yaml', dir)),
    [
      `x.yaml: /server/tls/certFile: file not found: ${join(dir, 'tls.crt')}`,
      `x.yaml: /server/tls/keyFile: file not found: ${join(dir, 'tls.key')}`,
    ],
  );
  t.same(
    problems(t, () => build({ ...minimal(), server: { tls: { certFile: 'a' } } })),
    ["test.yaml: /server/tls: must have required property 'keyFile'"],
  );
  t.same(
    problems(t, () => build({ ...minimal(), server: { tls: { certFile: 'a', keyFile: 'b', minVersion: 'TLSv1.1' } } })),
    ['test.yaml: /server/tls/minVersion: must be one of "TLSv1.2", "TLSv1.3"'],
  );
});

t.test('the result is deep-frozen', async (t) => {
  const c = build({ ...minimal(), rules: [{ name: 'r', match: { interactions: ['read'] }, require: { ipAllow: ['10.0.0.0/8'] } }] });
  const objects: [string, unknown][] = [
    ['config', c],
    ['server', c.server],
    ['server.trustedProxies', c.server.trustedProxies],
    ['auth', c.auth],
    ['auth.algorithms', c.auth.algorithms],
    ['auth.tokenCache', c.auth.tokenCache],
    ['rules', c.rules],
    ['rules[0]', c.rules[0]],
    ['rules[0].match.interactions', c.rules[0].match.interactions],
    ['rules[0].require.ipAllow', c.rules[0].require!.ipAllow],
    ['defaultRule.require', c.defaultRule.require],
    ['defaultRule.require.scopes', c.defaultRule.require.scopes],
    ['defaultRule.limits', c.defaultRule.limits],
  ];
  for (const [name, o] of objects) t.ok(Object.isFrozen(o), `${name} is frozen`);
  // ESM is strict mode: writes throw rather than being ignored.
  t.throws(() => {
    (c.defaultRule.require as { https: boolean }).https = false;
  }, TypeError);
  t.throws(() => (c.defaultRule.require.ipAllow as string[]).push('0.0.0.0/0'), TypeError);
  t.throws(() => {
    (c.server as { port: number }).port = 1;
  }, TypeError);
  t.equal(c.defaultRule.require.https, true);
});

t.test('schema errors name the file, the key path and what was expected', async (t) => {
  const cases: [string, Record<string, unknown>, string[]][] = [
    ['typo in a key', { defaultRule: { require: { htps: true } } }, ["test.yaml: /defaultRule/require: unknown key 'htps'"]],
    ['unknown section', { servr: {} }, ["test.yaml: /: unknown key 'servr'"]],
    [
      'unknown key in a rule match',
      { rules: [{ name: 'r', match: { interaction: ['read'] } }] },
      ["test.yaml: /rules/0/match: unknown key 'interaction'"],
    ],
    ['wrong type', { server: { port: 'eighty' } }, ['test.yaml: /server/port: must be integer']],
    [
      'wrong type (boolean as string)',
      { defaultRule: { require: { https: 'yes' } } },
      ['test.yaml: /defaultRule/require/https: must be boolean'],
    ],
    ['out of range', { server: { port: 70000 } }, ['test.yaml: /server/port: must be <= 65535']],
    [
      'enum',
      { logging: { level: 'verbose' } },
      ['test.yaml: /logging/level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"'],
    ],
    [
      'interaction enum',
      { rules: [{ name: 'r', match: { interactions: ['reed'] } }] },
      [
        'test.yaml: /rules/0/match/interactions/0: must be one of "read", "vread", "update", "patch", "delete", "create", "search", "history", "operation", "batch", "transaction", "capabilities"',
      ],
    ],
    ['rule without a name', { rules: [{ match: {} }] }, ["test.yaml: /rules/0: must have required property 'name'"]],
    [
      'resource type pattern',
      { rules: [{ name: 'r', match: { resourceTypes: ['patient'] } }] },
      ['test.yaml: /rules/0/match/resourceTypes/0: must match pattern "^([A-Z][A-Za-z]+|\\*)$"'],
    ],
    ['upstream scheme', { upstream: { url: 'ftp://u.test' } }, ['test.yaml: /upstream/url: must match pattern "^https?://"']],
    ['not a mapping', { rules: {} }, ['test.yaml: /rules: must be array']],
  ];
  for (const [name, over, want] of cases) {
    t.test(name, async (t) => {
      t.same(
        problems(t, () => build({ ...minimal(), ...over })),
        want,
      );
    });
  }
  t.test('several problems are all reported', async (t) => {
    const got = problems(t, () => build({ ...minimal(), server: { port: 'x', htps: 1 }, logging: { level: 'loud' } }));
    t.same(
      got.sort(),
      [
        'test.yaml: /logging/level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent"',
        'test.yaml: /server/port: must be integer',
        "test.yaml: /server: unknown key 'htps'",
      ].sort(),
    );
  });
  t.test('the whole document is not a mapping', async (t) => {
    for (const raw of [null, [], 'text', 42]) {
      t.same(
        problems(t, () => build(raw)),
        ['test.yaml: /: must be a mapping of sections (server, upstream, auth, rules, defaultRule, …)'],
      );
    }
  });
});

t.test('algorithms: only asymmetric ones; HS256 and none are refused', async (t) => {
  for (const alg of ['HS256', 'HS512', 'none', 'rs256']) {
    const got = problems(t, () => build({ ...minimal(), auth: { ...(minimal()['auth'] as object), algorithms: ['RS256', alg] } }));
    t.equal(got.length, 1);
    t.match(got[0], /^test\.yaml: \/auth\/algorithms\/1: must be one of "RS256", /, alg);
    t.notMatch(got[0], /"HS/, 'HS* is not offered as an alternative');
  }
  t.same(
    problems(t, () => build({ ...minimal(), auth: { ...(minimal()['auth'] as object), algorithms: [] } })),
    ['test.yaml: /auth/algorithms: must NOT have fewer than 1 items'],
  );
  t.same(build({ ...minimal(), auth: { ...(minimal()['auth'] as object), algorithms: ['ES256', 'EdDSA'] } }).auth.algorithms, [
    'ES256',
    'EdDSA',
  ]);
});

t.test('IP ranges: bad CIDRs and non-canonical addresses are refused with their path', async (t) => {
  const got = problems(t, () =>
    build({
      ...minimal(),
      server: { trustedProxies: ['10.0.0.0/33', '127.1', '10.0.0.1'] },
      defaultRule: { require: { ipAllow: ['::1/129', '10.0.0.0/8', '0x7f.0.0.1'], ipDeny: ['010.0.0.1'] } },
      rules: [{ name: 'r', match: {}, require: { ipDeny: ['10.0.0.0/-1', 'fe80::1%eth0', '192.168.0.0/16'] } }],
    }),
  );
  const msg = 'is not an IP address or CIDR range (IPv4 must be four-part decimal)';
  t.same(got, [
    `test.yaml: /server/trustedProxies/0: '10.0.0.0/33' ${msg}`,
    `test.yaml: /server/trustedProxies/1: '127.1' ${msg}`,
    `test.yaml: /defaultRule/require/ipAllow/0: '::1/129' ${msg}`,
    `test.yaml: /defaultRule/require/ipAllow/2: '0x7f.0.0.1' ${msg}`,
    `test.yaml: /defaultRule/require/ipDeny/0: '010.0.0.1' ${msg}`,
    `test.yaml: /rules/0/require/ipDeny/0: '10.0.0.0/-1' ${msg}`,
    `test.yaml: /rules/0/require/ipDeny/1: 'fe80::1%eth0' ${msg}`,
  ]);
  const ok = build({
    ...minimal(),
    server: { trustedProxies: ['10.0.0.0/8', '::1', '2001:db8::/32', '::ffff:10.0.0.0/104', '0.0.0.0/0'] },
  });
  t.equal(ok.server.trustedProxies.length, 5);
});

t.test('other semantic checks', async (t) => {
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        rules: [
          { name: 'r', match: {} },
          { name: 'r', match: {} },
        ],
      }),
    ),
    ["test.yaml: /rules/1/name: duplicate rule name 'r'"],
  );
  t.same(
    problems(t, () => build({ ...minimal(), upstream: { url: 'http://bad host/fhir' } })),
    ['test.yaml: /upstream/url: must be an absolute URL'],
  );
  t.same(
    problems(t, () => build({ ...minimal(), server: { publicBaseUrl: 'https://gw.test/fhir?x=1' } })),
    ['test.yaml: /server/publicBaseUrl: must not have a query or fragment'],
  );
  t.same(
    problems(t, () => build({ ...minimal(), auth: { ...(minimal()['auth'] as object), jwksFile: '/etc/hostname' } })),
    ['test.yaml: /auth: set jwksUri or jwksFile, not both'],
  );
  t.same(
    problems(t, () =>
      build(
        { upstream: { url: 'http://u.test' }, auth: { issuers: ['i'], audiences: ['a'], jwksFile: 'nope.json' } },
        {},
        'test.yaml',
        '/cfg',
      ),
    ),
    ['test.yaml: /auth/jwksFile: file not found: /cfg/nope.json'],
  );
  // Listeners on one port: the start would fail with EADDRINUSE.
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        server: { host: '0.0.0.0', port: 8080 },
        observability: { listen: { host: '127.0.0.1', port: 8080 } },
        admin: { enabled: true, listen: { port: 9000 } },
      }),
    ),
    ["test.yaml: /observability/listen/port: 8080 is also the public listener's port on 0.0.0.0: the gateway could not start"],
  );
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        admin: { enabled: true, listen: { port: 9000 } },
        observability: { listen: { host: '127.0.0.1', port: 9000 } },
      }),
    ),
    ["test.yaml: /observability/listen/port: 9000 is also /admin/listen's port on 127.0.0.1: the gateway could not start"],
  );
  t.doesNotThrow(
    () =>
      build({
        ...minimal(),
        server: { host: '127.0.0.1', port: 8080 },
        observability: { listen: { host: '10.0.0.1', port: 8080 } },
        admin: { enabled: true, listen: { port: 0 } },
      }),
    'other addresses, or any free port: no clash',
  );
});

t.test('auth required but nowhere to verify tokens → error', async (t) => {
  const missing = [
    'test.yaml: /auth: jwksUri or jwksFile is required while any rule requires auth, smart or scopes',
    'test.yaml: /auth/issuers: must list at least one issuer while any rule requires auth, smart or scopes',
    'test.yaml: /auth/audiences: must list at least one audience while any rule requires auth, smart or scopes',
  ];
  t.same(
    problems(t, () => build({ upstream: { url: 'http://u.test' } })),
    missing,
    'the defaultRule requires auth by default',
  );
  t.same(
    problems(t, () => build({ upstream: { url: 'http://u.test' }, auth: { issuers: ['i'], audiences: ['a'] } })),
    [missing[0]],
  );
  t.same(
    problems(t, () =>
      build({
        upstream: { url: 'http://u.test' },
        defaultRule: { require: { auth: false, smart: false } },
        rules: [{ name: 'admin', match: { interactions: ['delete'] }, require: { auth: true } }],
      }),
    ),
    missing,
    'one rule requiring auth is enough',
  );
  // smart is on by default: a public default needs it turned off as well.
  const open = build({ upstream: { url: 'http://u.test' }, defaultRule: { require: { auth: false, smart: false } } });
  t.equal(open.defaultRule.require.auth, false, 'no auth anywhere: no JWKS needed');
  const inherits = build({
    upstream: { url: 'http://u.test' },
    defaultRule: { require: { auth: false, smart: false } },
    rules: [{ name: 'r', match: {}, require: {} }],
  });
  t.equal(inherits.rules.length, 1, 'a rule that sets nothing inherits auth: false: still no JWKS needed');
  t.same(
    problems(t, () => build({ upstream: { url: 'http://u.test' }, defaultRule: { require: { auth: false, smart: true } } })),
    missing,
    'smart without auth still needs tokens, so a key source',
  );
  t.same(
    problems(t, () =>
      build({
        upstream: { url: 'http://u.test' },
        defaultRule: { require: { auth: false, smart: false } },
        rules: [{ name: 'w', match: {}, require: { scopes: ['fhir.write'] } }],
      }),
    ),
    missing,
    'literal scopes without auth still need tokens',
  );
});

t.test('YAML syntax errors name file:line:col; duplicate keys too', async (t) => {
  const dir = tempDir(t);
  const syntax = write(dir, 'syntax.yaml', 'upstream:\n  url: http://u.test\nauth: { issuers: [i\nrules: []\n');
  const got = problems(t, () => loadConfig(syntax, {}, noEmbedded));
  t.equal(got.length, 1);
  t.match(got[0], new RegExp(`^${syntax.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `), 'file:line:col first');
  const [, line, col] = /:(\d+):(\d+): /.exec(got[0]) ?? [];
  t.ok(Number(line) >= 3 && Number(col) >= 1, `points into the file (${line}:${col})`);
  const indent = write(dir, 'indent.yaml', 'server: {\n  port: 8080\nupstream: x\n');
  const [said] = problems(t, () => loadConfig(indent, {}, noEmbedded));
  t.match(
    said,
    /:3:1: Flow map in block collection must be sufficiently indented and end with a }$/,
    'the position once, nothing dangling after',
  );

  const dup = write(dir, 'dup.yaml', 'upstream:\n  url: http://u.test\n  url: http://evil.test\n');
  t.match(
    problems(t, () => loadConfig(dup, {}, noEmbedded)),
    [new RegExp(`^${dup.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:3: Map keys must be unique`)],
  );

  const tab = write(dir, 'tab.yaml', 'upstream:\n\turl: http://u.test\n');
  t.match(
    problems(t, () => loadConfig(tab, {}, noEmbedded)),
    [/tab\.yaml:2:\d+: /],
  );

  const missing = join(dir, 'missing.yaml');
  t.same(
    problems(t, () => loadConfig(missing, {}, noEmbedded)),
    [`${missing}: cannot be read (ENOENT)`],
  );

  const empty = write(dir, 'empty.yaml', '# nothing here\n');
  t.match(
    problems(t, () => loadConfig(empty, {}, noEmbedded)),
    [`${empty}: /auth: jwksUri or jwksFile is required while any rule requires auth, smart or scopes`],
    'an empty file is an empty mapping',
  );
});

t.test('includes: appended in order, relative to the including file; their errors name them', async (t) => {
  const dir = tempDir(t);
  write(
    dir,
    'rules/a.yaml',
    'rules:\n  - { name: a1, match: { interactions: [create] } }\n  - { name: a2, match: { interactions: [delete] } }\n',
  );
  write(dir, 'rules/b.yaml', 'rules:\n  - { name: b1, match: { interactions: [search] } }\n');
  const main = (includes: string[], extra = '') =>
    write(
      dir,
      'main.yaml',
      [
        'upstream: { url: http://u.test/fhir }',
        'auth: { issuers: [i], audiences: [a], jwksUri: https://i.test/jwks }',
        `include: [${includes.join(', ')}]`,
        'rules:',
        '  - { name: main, match: { interactions: [read] } }',
        extra,
      ].join('\n'),
    );
  const file = main(['rules/b.yaml', 'rules/a.yaml']);
  t.same(
    loadConfig(file, {}, noEmbedded).config.rules.map((r) => r.name),
    ['main', 'b1', 'a1', 'a2'],
    "the file's own rules first, then each include's in include order",
  );

  t.test('an unknown key in an include names the included file', async (t) => {
    const inc = write(dir, 'rules/typo.yaml', 'rules:\n  - { name: t, match: { interactions: [read] }, require: { htps: true } }\n');
    t.same(
      problems(t, () => loadConfig(main(['rules/typo.yaml']), {}, noEmbedded)),
      [`${inc}: /rules/0/require: unknown key 'htps'`],
    );
  });
  t.test('an include may hold only rules (no nested includes, no other sections)', async (t) => {
    const inc = write(dir, 'rules/more.yaml', 'include: [a.yaml]\nrules: []\nauth: {}\n');
    t.same(problems(t, () => loadConfig(main(['rules/more.yaml']), {}, noEmbedded)).sort(), [
      `${inc}: /: unknown key 'auth'`,
      `${inc}: /: unknown key 'include'`,
    ]);
  });
  t.test('a semantic error in an included rule names the included file and its index there', async (t) => {
    const inc = write(
      dir,
      'rules/cidr.yaml',
      'rules:\n  - { name: ok, match: { interactions: [read] } }\n  - { name: c, match: { interactions: [read] }, require: { ipAllow: [10.0.0.0/33] } }\n',
    );
    t.same(
      problems(t, () => loadConfig(main(['rules/cidr.yaml']), {}, noEmbedded)),
      [`${inc}: /rules/1/require/ipAllow/0: '10.0.0.0/33' is not an IP address or CIDR range (IPv4 must be four-part decimal)`],
    );
  });
  t.test('a duplicate rule name across files names the file of the second one', async (t) => {
    const inc = write(dir, 'rules/dupname.yaml', 'rules:\n  - { name: main, match: {} }\n');
    t.same(
      problems(t, () => loadConfig(main(['rules/dupname.yaml']), {}, noEmbedded)),
      [`${inc}: /rules/0/name: duplicate rule name 'main'`],
    );
  });
  t.test('a YAML error or a missing include names the included file', async (t) => {
    const inc = write(dir, 'rules/broken.yaml', 'rules:\n  - { name: x\n');
    t.match(
      problems(t, () => loadConfig(main(['rules/broken.yaml']), {}, noEmbedded)),
      [new RegExp(`^${inc.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+: `)],
    );
    t.same(
      problems(t, () => loadConfig(main(['rules/none.yaml']), {}, noEmbedded)),
      [`${join(dir, 'rules/none.yaml')}: cannot be read (ENOENT)`],
    );
  });
  t.test('problems in several includes are all reported', async (t) => {
    const x = write(dir, 'rules/x.yaml', 'rules: [{ name: x, match: { interactions: [reed] } }]\n');
    const y = write(dir, 'rules/y.yaml', 'rules: [{ name: y, match: {}, limits: { maxRequestBytes: -1 } }]\n');
    t.same(
      problems(t, () => loadConfig(main(['rules/x.yaml', 'rules/y.yaml']), {}, noEmbedded)).map((p) => p.split(':')[0]),
      [x, y],
    );
  });
});

t.test('environment overrides: GATEWAY_UPSTREAM_URL, GATEWAY_HOST, GATEWAY_PORT, GATEWAY_CONFIG', async (t) => {
  const env = { GATEWAY_UPSTREAM_URL: 'https://hapi.internal/fhir', GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: '9443' };
  const c = build({ ...minimal(), server: { host: '0.0.0.0', port: 8080 } }, env);
  t.equal(c.upstream.url, 'https://hapi.internal/fhir', 'env wins over the file');
  t.equal(c.server.host, '127.0.0.1');
  t.equal(c.server.port, 9443);
  t.equal(build(minimal(), { GATEWAY_PORT: '0' }).server.port, 0, 'port 0 (ephemeral) is allowed');
  t.equal(build(minimal(), { GATEWAY_PORT: '' }).server.port, 8080, 'an empty GATEWAY_PORT is unset');

  const noUpstream = minimal();
  delete noUpstream['upstream'];
  t.equal(
    build(noUpstream, { GATEWAY_UPSTREAM_URL: 'http://only-env.test/fhir' }).upstream.url,
    'http://only-env.test/fhir',
    'creates the section when the file has none',
  );

  for (const port of ['eighty', '80a', ' 80', '8080.0', '-1', '0x50']) {
    t.same(
      problems(t, () => build(minimal(), { GATEWAY_PORT: port })),
      ['test.yaml: /server/port: must be integer (set by GATEWAY_PORT)'],
      `GATEWAY_PORT=${JSON.stringify(port)}`,
    );
  }
  t.same(
    problems(t, () => build(minimal(), { GATEWAY_PORT: '65536' })),
    ['test.yaml: /server/port: must be <= 65535 (set by GATEWAY_PORT)'],
  );
  t.same(
    problems(t, () => build(minimal(), { GATEWAY_UPSTREAM_URL: 'hapi:8080' })),
    ['test.yaml: /upstream/url: must match pattern "^https?://" (set by GATEWAY_UPSTREAM_URL)'],
  );
  t.same(
    problems(t, () => build({ ...minimal(), upstream: { url: 'hapi:8080' } })),
    ['test.yaml: /upstream/url: must match pattern "^https?://"'],
    'the file is blamed when the value is its own',
  );

  const dir = tempDir(t);
  const file = write(
    dir,
    'from-env.yaml',
    'upstream: { url: http://file.test/fhir }\nauth: { issuers: [i], audiences: [a], jwksUri: https://i.test/jwks }\n',
  );
  const viaEnv = loadConfig(undefined, { GATEWAY_CONFIG: file, GATEWAY_PORT: '1234' }, noEmbedded);
  t.equal(viaEnv.file, file, 'GATEWAY_CONFIG names the file');
  t.equal(viaEnv.config.server.port, 1234);
  t.equal(loadConfig(file, { GATEWAY_CONFIG: '/nonexistent.yaml' }, noEmbedded).file, file, '--config wins over GATEWAY_CONFIG');
});

t.test('policies/default.yaml is the embedded default and needs only the deployment specifics', async (t) => {
  t.equal(resolve(DEFAULT_POLICY_FILE), resolve(POLICIES, 'default.yaml'));
  t.same(embeddedDefaults(), parse(readFileSync(join(POLICIES, 'default.yaml'), 'utf8')));
  const file = join(POLICIES, 'default.yaml');
  // As shipped it refuses to start: it does not know where tokens come from.
  t.same(
    problems(t, () => loadConfig(file, {}, noEmbedded)),
    [
      `${file}: /auth: jwksUri or jwksFile is required while any rule requires auth, smart or scopes`,
      `${file}: /auth/issuers: must list at least one issuer while any rule requires auth, smart or scopes`,
      `${file}: /auth/audiences: must list at least one audience while any rule requires auth, smart or scopes`,
    ],
  );
  t.same(
    problems(t, () => loadConfig(undefined, {}, embeddedDefaults)).map((p) => p.split(': ')[0]),
    ['(embedded defaults)', '(embedded defaults)', '(embedded defaults)'],
  );

  // With those filled in, it is valid and secure by default.
  const raw = embeddedDefaults() as Record<string, Record<string, unknown>>;
  raw['auth'] = { ...raw['auth'], issuers: ['https://issuer.test'], audiences: ['gw'], jwksUri: 'https://issuer.test/jwks' };
  const c = buildConfig(raw, file, POLICIES, { GATEWAY_UPSTREAM_URL: 'http://hapi:8080/fhir' });
  t.equal(c.upstream.url, 'http://hapi:8080/fhir');
  t.same(c.defaultRule.require, { https: true, auth: true, smart: true, scopes: [], ipAllow: [], ipDeny: [] });
  t.equal(c.defaultRule.limits.maxRequestBytes, 10485760);
  t.equal(c.auth.clockToleranceSeconds, 30);
  t.same(
    c.rules.map((r) => r.name),
    ['capabilities', 'binary-writes', 'binary-access-write', 'fhir-writes'],
  );
});

t.test('every policies/examples/*.yaml parses', async (t) => {
  const examples = join(POLICIES, 'examples');
  const yamls = readdirSync(examples).filter((f) => f.endsWith('.yaml'));
  t.ok(yamls.length >= 2, 'sanity: examples found');
  // Files included by another example hold only rules; they are checked through the includer.
  const included = new Set<string>();
  for (const f of yamls) {
    const doc = parse(readFileSync(join(examples, f), 'utf8')) as { include?: string[] };
    for (const inc of doc.include ?? []) included.add(resolve(examples, inc));
  }
  // Stand-ins for the certificate files the strict example names under /etc.
  const copy = tempDir(t);
  cpSync(examples, copy, { recursive: true });
  write(copy, 'tls.crt', 'stand-in');
  write(copy, 'tls.key', 'stand-in');
  for (const f of yamls) {
    const file = join(examples, f);
    if (included.has(file)) {
      t.ok(parse(readFileSync(file, 'utf8')).rules, `${f} is an include with rules`);
      continue;
    }
    t.test(f, async (t) => {
      let config: GatewayConfig | undefined;
      try {
        config = loadConfig(file, {}, noEmbedded).config;
      } catch (err) {
        // Only files that cannot exist here may be missing: the TLS files under /etc.
        const ps = err instanceof ConfigError ? err.problems : [String(err)];
        t.same(
          ps.filter((p) => !/: \/server\/tls\/(certFile|keyFile): file not found: \/etc\//.test(p)),
          [],
          'the only problems are missing /etc TLS files',
        );
        const text = readFileSync(join(copy, f), 'utf8').replace(/\/etc\/fhir-binary-gateway\//g, './');
        config = loadConfig(write(copy, f, text), {}, noEmbedded).config;
      }
      t.ok(Object.isFrozen(config), 'loaded and frozen');
      t.ok(config.upstream.url, 'names an upstream');
    });
  }

  t.test('strict-hipaa: includes appended, TLS 1.3, inherited IP ranges', async (t) => {
    const text = readFileSync(join(copy, 'strict-hipaa.yaml'), 'utf8').replace(/\/etc\/fhir-binary-gateway\//g, './');
    const c = loadConfig(write(copy, 'strict-hipaa.yaml', text), {}, noEmbedded).config;
    t.same(
      c.rules.map((r) => r.name),
      ['capabilities', 'binary-uploads', 'no-deletes-from-wards'],
    );
    t.equal(c.server.tls?.minVersion, 'TLSv1.3');
    t.equal(c.server.tls?.certFile, join(copy, 'tls.crt'));
    t.same(c.auth.algorithms, ['PS256', 'ES256']);
    t.same(c.defaultRule.require.ipDeny, ['10.20.99.0/24']);
  });
  t.test('dev: jwksFile resolved next to the file', async (t) => {
    const c = loadConfig(join(examples, 'dev.yaml'), {}, noEmbedded).config;
    t.equal(c.auth.jwksFile, join(examples, 'dev-jwks.json'));
    t.equal(c.defaultRule.require.https, false);
  });
});

t.test('content.cacheControl: no-store by default; only no-store or private, max-age=<seconds> are accepted', async (t) => {
  const withValue = (cacheControl: unknown) => ({ ...minimal(), content: { cacheControl } });
  t.equal(build(minimal()).content.cacheControl, 'no-store', 'PHI is not cached unless the policy says so');
  for (const ok of ['no-store', 'private, max-age=0', 'private, max-age=300', 'private, max-age=86400']) {
    t.equal(build(withValue(ok)).content.cacheControl, ok, ok);
  }
  for (const bad of [
    'public, max-age=60',
    'max-age=60',
    'no-cache',
    'private',
    'private, max-age=-1',
    'private, max-age=01',
    'private,max-age=60',
    'private, max-age=60, public',
    'private, max-age=60, s-maxage=600',
    'PRIVATE, max-age=60',
    'no-store\r\nSet-Cookie: a=b',
    '',
    60,
  ]) {
    t.match(
      problems(t, () => build(withValue(bad))),
      [/^test\.yaml: \/content\/cacheControl: must /],
      JSON.stringify(bad),
    );
  }
});

t.test('a rule naming a resource type that does not exist is refused (it would never apply)', async (t) => {
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        rules: [
          { name: 'tight', match: { resourceTypes: ['Binray', 'Patient', 'Documentreference'] }, require: { ipAllow: ['10.0.0.0/8'] } },
        ],
      }),
    ),
    [
      "test.yaml: /rules/0/match/resourceTypes/0: 'Binray' is not a FHIR R4 resource type",
      "test.yaml: /rules/0/match/resourceTypes/2: 'Documentreference' is not a FHIR R4 resource type (did you mean 'DocumentReference'?)",
    ],
  );
  t.equal(build({ ...minimal(), rules: [{ name: 'any', match: { resourceTypes: ['*'] } }] }).rules.length, 1, "'*' is fine");
});

t.test('storage: defaults, paths relative to the policy file, and the checks the schema cannot express', async (t) => {
  const c = build(minimal());
  t.equal(c.storage.driver, 'filesystem');
  t.equal(c.storage.filesystem.directory, '/cfg/data/blobs', 'relative to the policy file');
  t.same(c.content.allowedTypes['Media'], ['audio/*', 'video/*', 'image/dicom'], "the seed's allow-list by default");
  t.same(
    problems(t, () => build({ ...minimal(), storage: { driver: 's3' } })),
    ["test.yaml: /storage/s3: is required when storage.driver is 's3'"],
  );
  t.same(
    problems(t, () => build({ ...minimal(), storage: { driver: 'azure', azure: { container: 'blobs' } } })),
    ['test.yaml: /storage/azure: set exactly one of connectionStringEnv, accountKeyEnv (with accountName) or sasTokenEnv (with url)'],
  );
  t.same(
    problems(t, () => build({ ...minimal(), storage: { s3: { bucket: 'b', accessKeyIdEnv: 'AK' } } })),
    ['test.yaml: /storage/s3: set both accessKeyIdEnv and secretAccessKeyEnv, or neither (the SDK default chain)'],
  );
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        storage: {
          filesystem: {
            encryption: {
              activeKey: 'k2',
              keys: [
                { id: 'k1', env: 'K1' },
                { id: 'k1', file: 'k.key', env: 'K' },
              ],
            },
          },
        },
      }),
    ),
    [
      "test.yaml: /storage/filesystem/encryption/activeKey: 'k2' is not among the keys",
      'test.yaml: /storage/filesystem/encryption/keys: key ids must be unique',
      'test.yaml: /storage/filesystem/encryption/keys/1: set exactly one of file or env',
      'test.yaml: /storage/filesystem/encryption/keys/1/file: file not found: /cfg/k.key',
    ],
  );
  t.same(
    problems(t, () => build({ ...minimal(), content: { allowedTypes: { Documentreference: ['application/pdf'] } } })),
    ["test.yaml: /content/allowedTypes/Documentreference: 'Documentreference' is not a FHIR R4 resource type"],
  );
});

t.test('signed URLs: windows of at most a week; store URLs only where the store has URLs', async (t) => {
  const urls = (extra: Record<string, unknown>) => ({ ...minimal(), signedUrls: { keys: [{ id: 'k', env: 'K' }], ...extra } });
  t.same(
    problems(t, () => build(urls({ maxWindow: '30d', defaultWindow: '15m' }))),
    ['test.yaml: /signedUrls/maxWindow: at most 7d: a signed URL is a bearer credential'],
  );
  t.same(
    problems(t, () => build(urls({ policies: [{ id: 'p', permissions: 'r', maxWindow: '8d' }] }))),
    ['test.yaml: /signedUrls/policies/0/maxWindow: at most 7d: a signed URL is a bearer credential'],
  );
  t.same(
    problems(t, () => build(urls({ store: { enabled: true } }))),
    ['test.yaml: /signedUrls/store/enabled: the filesystem store serves no URLs of its own: store URLs need s3 or azure'],
  );
});

t.test('graphql.path is never a FHIR path or one of the gateway’s own', async (t) => {
  const msg = (p: string) =>
    `test.yaml: /graphql/path: '${p}' is a path of the FHIR API or of the gateway's own: choose another (e.g. /graphql)`;
  for (const path of ['/Patient', '/metadata', '/_history', '/healthz', '/_admin/x'])
    t.same(
      problems(t, () => build({ ...minimal(), graphql: { path } })),
      [msg(path)],
      path,
    );
  t.same(
    problems(t, () => build({ ...minimal(), server: { publicBaseUrl: 'https://gw.example/fhir' }, graphql: { path: '/fhir/graphql' } })),
    [msg('/fhir/graphql')],
    'under the FHIR base',
  );
  t.equal(
    build({ ...minimal(), server: { publicBaseUrl: 'https://gw.example/fhir' }, graphql: { path: '/files/graphql' } }).graphql.path,
    '/files/graphql',
  );
  t.equal(build(minimal()).graphql.path, '/graphql', 'the default');
});

t.test('retention classes, the audit file and the admin allow-list are checked', async (t) => {
  t.same(
    problems(t, () =>
      build({
        ...minimal(),
        retention: {
          classes: [
            { name: 'a', keepDays: 1, resourceTypes: ['Documentreference', 'Nope'] },
            { name: 'a', keepDays: 2 },
            { name: 'unlinked', keepDays: 3 },
          ],
        },
        audit: { destination: 'file' },
        admin: { ipAllow: ['10.0.0.0/33'] },
      }),
    ),
    [
      "test.yaml: /retention/classes/0/resourceTypes/0: 'Documentreference' is not a FHIR resource type (did you mean 'DocumentReference'?)",
      "test.yaml: /retention/classes/0/resourceTypes/1: 'Nope' is not a FHIR resource type",
      "test.yaml: /retention/classes/1/name: 'a' is already a class name",
      "test.yaml: /retention/classes/2/name: 'unlinked' is already a class name",
      "test.yaml: /admin/ipAllow/0: '10.0.0.0/33' is not an IP address or CIDR range (IPv4 must be four-part decimal)",
      "test.yaml: /audit/file: is required when /audit/destination is 'file'",
    ],
  );
  const ok = build({ ...minimal(), audit: { destination: 'file', file: 'audit/trail.jsonl' } });
  t.ok(
    ok.audit.file!.endsWith('/audit/trail.jsonl') && ok.audit.file!.startsWith('/'),
    'the audit file is resolved against the config file',
  );
});
