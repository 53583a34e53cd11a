import { hostname } from 'node:os';
import { loadConfig, type ConfigEnv } from '../config/load.js';
import { embeddedDefaults } from '../config/embedded.js';
import { ConfigError } from '../errors/catalogue.js';
import { HttpPendingLookup } from '../binary/pending-lookup.js';
import { sweep } from '../binary/sweeper.js';
import { createBlobStore } from '../storage/create.js';
import type { AuditRecord } from '../audit/record.js';
import { AuditTrail } from '../audit/trail.js';
import { createLogger } from '../logging/logger.js';

/**
 * `fhir-binary-gateway sweep [--config FILE] [--dry-run]`: one retention sweep of the configured
 * store (binary/sweeper.ts), safe to run from every replica's cron at once. Prints one JSON
 * report on stdout. Exit status 0 (also when another sweep holds this period: nothing to do).
 */
export async function runSweep(
  values: { config?: string; 'dry-run'?: boolean },
  env: ConfigEnv,
  out: NodeJS.WriteStream = process.stdout,
): Promise<number> {
  const { config, file } = loadConfig(values.config ?? env.GATEWAY_CONFIG, env, embeddedDefaults);
  if (!config.upstream.url)
    throw new ConfigError([`${file ?? '(embedded defaults)'}: /upstream/url: is required (or set GATEWAY_UPSTREAM_URL)`]);
  const store = await createBlobStore(config.storage, env as NodeJS.ProcessEnv);
  // Changes are audited where the gateway audits them, except on stdout: that carries the report.
  const audit = { ...config.audit, destination: config.audit.destination === 'stdout' ? ('off' as const) : config.audit.destination };
  const trail =
    audit.destination !== 'off' || audit.fhir.enabled
      ? new AuditTrail({
          audit,
          upstream: config.upstream,
          stdout: out,
          log: createLogger('warn', process.stderr),
          env: env as NodeJS.ProcessEnv,
        })
      : undefined;
  const report = await sweep({
    store,
    upstream: new HttpPendingLookup({
      base: config.upstream.url,
      aliases: config.upstream.aliases,
      timeoutMs: config.upstream.timeoutMs,
      rejectUnauthorized: config.upstream.rejectUnauthorized,
    }),
    spoolDir: config.server.spoolDir,
    retention: config.retention,
    dryRun: values['dry-run'] === true,
    holder: `${hostname()}:${process.pid}`,
    ...(trail ? { audit: (r: AuditRecord) => trail.record(r) } : {}),
  });
  await trail?.close();
  out.write(`${JSON.stringify({ driver: store.driver, ...report })}\n`);
  return 0;
}
