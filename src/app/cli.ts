import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { buildConfig, loadConfig, type ConfigEnv } from '../config/load.js';
import { ConfigError } from '../errors/catalogue.js';
import { embeddedDefaults } from '../config/embedded.js';
import type { GatewayConfig } from '../config/types.js';
import { startDemo, type Demo } from '../demo/demo.js';
import { createLogger } from '../logging/logger.js';
import { runScrub } from './scrub-command.js';
import { runSweep } from './sweep-command.js';
import { startGateway, type RunningGateway } from './server.js';

const USAGE = `Usage: fhir-binary-gateway [--config FILE]
       fhir-binary-gateway scrub [--config FILE] [--since ISO-TIME] [--sample FRACTION]
       fhir-binary-gateway sweep [--config FILE] [--dry-run]

  --config FILE   policy file (YAML); also GATEWAY_CONFIG
  --help          this text

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

function banner(lines: string[]): string {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = '='.repeat(width + 4);
  return [bar, ...lines.map((l) => `| ${l.padEnd(width)} |`), bar].join('\n');
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      config: { type: 'string' },
      help: { type: 'boolean' },
      since: { type: 'string' },
      sample: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const env: ConfigEnv = process.env;
  const command = positionals[0];
  if (command === 'scrub' && positionals.length === 1 && values['dry-run'] === undefined) return runScrub(values, env);
  if (command === 'sweep' && positionals.length === 1 && values.since === undefined && values.sample === undefined)
    return runSweep(values, env);
  if (command !== undefined || values.since !== undefined || values.sample !== undefined || values['dry-run'] !== undefined) {
    process.stderr.write(`${USAGE}\n`);
    return 64; // EX_USAGE
  }
  const file = values.config ?? env.GATEWAY_CONFIG;
  // Demo mode only when nothing at all says where the upstream is; a given upstream never falls back to it.
  const demoMode = !file && !env.GATEWAY_UPSTREAM_URL;

  let demo: Demo | undefined;
  let config: GatewayConfig;
  let configFile: string | undefined;
  let log: Logger;
  if (demoMode) {
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
        `upstream: ${demo.upstreamUrl} (in-memory, data is lost on exit)`,
        'token scopes: user/*.cruds files.write fhir.write (valid 1 hour)',
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
      running.reload(next);
      log.info({ file: configFile }, 'configuration reloaded');
      // Listeners and the upstream connection pool are built once: say so rather than pretend.
      // (server.trustedProxies and server.spoolDir are per-request state and do take effect.)
      // The admin API's listener and routes are set up at start (turning it off does take
      // effect: its routes then answer 404); the audit trail's destination is opened at start.
      const fixedPart = (c: GatewayConfig, k: 'server' | 'upstream' | 'admin' | 'audit') =>
        JSON.stringify(
          k === 'server'
            ? { ...c.server, trustedProxies: undefined, spoolDir: undefined }
            : k === 'admin'
              ? { listen: c.admin.listen, on: c.admin.enabled || config.admin.enabled }
              : c[k],
        );
      const fixed = (['server', 'upstream', 'admin', 'audit'] as const).filter((k) => fixedPart(next, k) !== fixedPart(config, k));
      if (fixed.length > 0) log.warn({ file: configFile, sections: fixed }, 'changes to these sections take effect only after a restart');
    } catch (err) {
      // A bad new policy must not take the gateway down or open it up: keep the old one.
      log.error(
        { file: configFile, problems: err instanceof ConfigError ? err.problems : [String(err)] },
        'configuration reload failed; keeping the previous configuration',
      );
    }
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      void running
        .close()
        .catch((err: unknown) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown did not complete cleanly'))
        .finally(() => {
          demo?.stop();
          // Asynchronous destination: exiting before the flush completes loses the last lines.
          log.flush(() => resolve());
        });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    process.stderr.write(`fhir-binary-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
