import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { buildConfig, loadConfig, type ConfigEnv } from '../config/load.js';
import { ConfigError } from '../errors/catalogue.js';
import { embeddedDefaults } from '../config/embedded.js';
import type { GatewayConfig } from '../config/types.js';
import { demoUnavailable, missingDemoPackages, startDemo, type Demo } from '../demo/demo.js';
import { createLogger } from '../logging/logger.js';
import { runScrub } from './scrub-command.js';
import { runCheck } from './check-command.js';
import { runHealth } from './health-command.js';
import { runKeygen } from './keygen-command.js';
import { runSweep } from './sweep-command.js';
import { runToken } from './token-command.js';
import { startGateway, type RunningGateway } from './server.js';

const USAGE = `Usage: fhir-binary-gateway [--config FILE] [--check]
       fhir-binary-gateway token --key FILE --scope SCOPES [--config FILE] [--sub ID] [--patient ID] [--ttl SECONDS]
       fhir-binary-gateway keygen --out DIR
       fhir-binary-gateway health [--config FILE]
       fhir-binary-gateway scrub [--config FILE] [--since ISO-TIME] [--sample FRACTION]
       fhir-binary-gateway sweep [--config FILE] [--dry-run]

  --config FILE   policy file (YAML); also GATEWAY_CONFIG
  --help          this text
  --check         validate the policy (schema, rules, key set, TLS files) and exit: 0 valid, 78 not

  token           mint a development access token for the policy's first issuer and audience,
                  signed with the private key in --key (a JWK); the token alone on stdout.
                  policies/examples/dev.yaml ships such a key pair (dev-key.json): never in production
    --scope       the token's scopes, e.g. "user/*.cruds fhir.write"
    --sub         its subject (default dev-user); --patient: a SMART launch patient
    --ttl         seconds it is valid (default 3600, at most 86400)

  keygen          write a signing key pair to --out DIR: jwks.json (for auth.jwksFile) and key.json
                  (owner-only, for token --key); existing files are kept
  health          exit 0 when the gateway this policy configures answers /healthz on this host
                  (its observability listener, else its main one): a container HEALTHCHECK

  scrub           re-read the store's blobs and check them against their records (size, SHA-256,
                  chunk digests); a JSON summary on stdout; exit 1 when any blob fails
    --since       only blobs created at or after this time
    --sample      check about this fraction of the blobs, at random (e.g. 0.05)

  sweep           one retention sweep: crash leftovers past retention.temporaryHours, blobs left
                  pending past retention.pendingGraceHours reconciled with the upstream; one sweep
                  at a time across replicas; a JSON report on stdout
    --dry-run     report what would be done, change nothing

Environment overrides: GATEWAY_CONFIG, GATEWAY_UPSTREAM_URL, GATEWAY_HOST, GATEWAY_PORT.
With no configuration file and no upstream URL, the gateway starts in DEMO MODE: an embedded
in-memory FHIR server, a generated signing key, loopback only. Never use demo mode in production.`;

const DEMO_DEFAULT_PORT = 8080;

/** The options each command takes ('' is the gateway itself); anything else is a usage error. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  '': ['config', 'check'],
  scrub: ['config', 'since', 'sample'],
  sweep: ['config', 'dry-run'],
  token: ['config', 'key', 'scope', 'sub', 'patient', 'ttl'],
  keygen: ['out'],
  health: ['config'],
};

function banner(lines: string[]): string {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '='.repeat(width + 4);
  return [bar, ...lines.map((l) => `| ${l.padEnd(width)} |`), bar].join('\n');
}

function parseCommandLine() {
  return parseArgs({
    options: {
      config: { type: 'string' },
      help: { type: 'boolean' },
      check: { type: 'boolean' },
      since: { type: 'string' },
      sample: { type: 'string' },
      'dry-run': { type: 'boolean' },
      key: { type: 'string' },
      scope: { type: 'string' },
      sub: { type: 'string' },
      patient: { type: 'string' },
      ttl: { type: 'string' },
      out: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
}

/** What parseArgs refused (an unknown option, a missing value): a usage error, said in one line and exit 64. */
function usageError(err: unknown): number {
  const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
  process.stderr.write(`fhir-binary-gateway: ${why}\n\n${USAGE}\n`);
  return 64; // EX_USAGE
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseCommandLine>;
  try {
    args = parseCommandLine();
  } catch (err) {
    return usageError(err);
  }
  const { values, positionals } = args;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const env: ConfigEnv = process.env;
  const command = positionals[0] ?? '';
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed || positionals.length > 1 || Object.keys(values).some((k) => !allowed.includes(k))) {
    process.stderr.write(`${USAGE}\n`);
    return 64; // EX_USAGE
  }
  if (command === 'scrub') return runScrub(values, env);
  if (command === 'sweep') return runSweep(values, env);
  if (command === 'token') return runToken(values, env);
  if (command === 'keygen') return runKeygen(values);
  if (command === 'health') return runHealth(values, env);
  if (values.check) return runCheck(values, env);
  asService = true;
  const file = values.config ?? env.GATEWAY_CONFIG;
  // Demo mode only when nothing at all says where the upstream is; a given upstream never falls back to it.
  const demoMode = !file && !env.GATEWAY_UPSTREAM_URL;

  let demo: Demo | undefined;
  let config: GatewayConfig;
  let configFile: string | undefined;
  let log: Logger;
  if (demoMode) {
    // A production install has no demo server: say so as a configuration problem (exit 78).
    const missing = missingDemoPackages();
    if (missing.length > 0) throw new ConfigError([demoUnavailable(missing)]);
    const port = env.GATEWAY_PORT ? Number(env.GATEWAY_PORT) : DEMO_DEFAULT_PORT;
    demo = await startDemo(Number.isInteger(port) ? port : DEMO_DEFAULT_PORT);
    // GATEWAY_HOST is ignored: the demo serves plain HTTP and must stay on loopback.
    try {
      config = buildConfig(demo.config, '(demo mode)', process.cwd(), { GATEWAY_PORT: env.GATEWAY_PORT });
    } catch (err) {
      demo.stop(); // the forked upstream and the key's temp dir
      throw err;
    }
    log = createLogger(config.logging.level);
    log.warn(
      { demo: true, upstream: demo.upstreamUrl },
      'DEMO MODE: embedded in-memory FHIR server, generated key, plain HTTP on loopback. Not for production.',
    );
  } else {
    const loaded = loadConfig(file, env, embeddedDefaults);
    config = loaded.config;
    configFile = loaded.file;
    log = createLogger(config.logging.level);
    if (!config.upstream.url)
      throw new ConfigError([`${configFile ?? '(embedded defaults)'}: /upstream/url: is required (or set GATEWAY_UPSTREAM_URL)`]);
    if (!config.server.publicBaseUrl) log.warn('server.publicBaseUrl is not set: Location headers will name the listen address');
  }

  // Whatever escapes every handler is a bug: said as a JSON line, then the process ends (its state is unknown).
  const fatal = (kind: string) => (err: unknown) => {
    log.fatal({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, `${kind}: the gateway stops`);
    log.flush(() => process.exit(1));
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));

  let running: RunningGateway;
  try {
    running = await startGateway(config, log);
  } catch (err) {
    demo?.stop();
    throw err;
  }

  if (demo) {
    const id = await demo.seedPatient();
    const curl = `curl -s -H "Authorization: Bearer ${demo.token}" ${running.publicBaseUrl}/Patient/${id}`;
    process.stdout.write(
      `\n${banner([
        'fhir-binary-gateway is running in DEMO MODE (not for production)',
        `gateway:  ${running.publicBaseUrl}`,
        `upstream: ${demo.upstreamUrl} (in-memory; its data and the blobs are removed on exit)`,
        'token scopes: user/*.cruds files.write fhir.write (valid 1 hour)',
        `GraphQL:  ${running.url}${config.graphql.path} (open it in a browser for GraphiQL; docs/graphql.md)`,
      ])}\n\nTry it:\n\n${curl}\n\n`,
    );
  }

  process.on('SIGHUP', () => {
    if (!configFile) {
      log.warn('SIGHUP ignored: no configuration file to reload');
      return;
    }
    try {
      const next = loadConfig(configFile, env, embeddedDefaults).config;
      // Listeners, the store and the upstream connection pool are built once: say so, by key, rather than pretend.
      const ignored = running.reload(next);
      log.info({ file: configFile }, 'configuration reloaded');
      if (ignored.length > 0)
        log.warn({ file: configFile, keys: ignored }, 'these changes take effect only after a restart: ignored until then');
    } catch (err) {
      // A bad new policy must not take the gateway down or open it up: keep the old one.
      running.reloadFailed();
      log.error(
        { file: configFile, problems: err instanceof ConfigError ? err.problems : [String(err)] },
        'configuration reload failed; keeping the previous configuration',
      );
    }
  });

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // A second signal: the operator does not want to wait for the drain.
        log.warn({ signal }, 'second signal: exiting at once');
        log.flush(() => process.exit(130));
        return;
      }
      stopping = true;
      const started = performance.now();
      log.info({ signal, deadlineMs: running.settings.current.config.server.shutdownTimeoutMs }, 'shutting down: draining');
      void running
        .close()
        .then(
          () => log.info({ ms: Math.round(performance.now() - started) }, 'stopped'),
          (err: unknown) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown did not complete cleanly'),
        )
        .finally(() => {
          demo?.stop();
          // Asynchronous destination: exiting before the flush completes loses the last lines.
          log.flush(() => resolve());
        });
    };
    // One handler for both signals, for the whole life of the process: the second is told apart, never taken for a first.
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
}

/**
 * Set once the command is known to be the gateway itself: its fatal errors are JSON lines like
 * the rest of its log (a log collector reads them); the one-shot commands' are text for a person.
 */
let asService = false;

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const config = err instanceof ConfigError;
    if (asService) {
      const line = {
        level: 'fatal',
        time: new Date().toISOString(),
        service: 'fhir-binary-gateway',
        ...(config ? { problems: err.problems } : { err: err instanceof Error ? err.message : String(err) }),
        msg: config ? 'invalid configuration: the gateway did not start' : 'the gateway did not start',
      };
      process.stderr.write(`${JSON.stringify(line)}\n`);
    } else process.stderr.write(config ? `${err.message}\n` : `fhir-binary-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(config ? 78 /* EX_CONFIG */ : 1);
  },
);
