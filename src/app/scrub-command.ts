import { loadConfig, type ConfigEnv } from '../config/load.js';
import { embeddedDefaults } from '../config/embedded.js';
import { ConfigError } from '../errors/catalogue.js';
import { createBlobStore } from '../storage/create.js';
import { scrub, type ScrubReport } from '../storage/scrub.js';

/**
 * `fhir-binary-gateway scrub [--config FILE] [--since ISO-TIME] [--sample FRACTION]`: re-reads the
 * configured store's blobs and checks them against their records (storage/scrub.ts). Prints one
 * JSON summary on stdout (for cron and Kubernetes CronJobs), progress on stderr when it is a
 * terminal. Exit status: 0 every blob checked is sound, 1 some are not (or could not be checked).
 */
export async function runScrub(
  values: { config?: string; since?: string; sample?: string },
  env: ConfigEnv,
  out: NodeJS.WriteStream = process.stdout,
  err: NodeJS.WriteStream = process.stderr,
): Promise<number> {
  const problems: string[] = [];
  const since = values.since === undefined ? undefined : new Date(values.since);
  if (since && Number.isNaN(since.getTime())) problems.push(`--since: not a date and time: ${values.since}`);
  const sample = values.sample === undefined ? undefined : Number(values.sample);
  if (sample !== undefined && !(sample > 0 && sample <= 1)) problems.push(`--sample: a fraction in (0, 1], e.g. 0.05: ${values.sample}`);
  if (problems.length) throw new ConfigError(problems);
  const { config } = loadConfig(values.config ?? env.GATEWAY_CONFIG, env, embeddedDefaults);
  const store = await createBlobStore(config.storage, env as NodeJS.ProcessEnv);
  const started = Date.now();
  const tty = err.isTTY === true;
  const report = await scrub(store, {
    ...(since ? { since } : {}),
    ...(sample !== undefined ? { sample } : {}),
    ...(tty ? { onProgress: (r: ScrubReport) => err.write(`\rscrub: ${r.checked} checked, ${r.failures.length} failed`) } : {}),
  });
  if (tty) err.write('\n');
  const summary = {
    driver: store.driver,
    listed: report.listed,
    checked: report.checked,
    ok: report.ok,
    failed: report.failures.length,
    deleted: report.deleted,
    bytes: report.bytes,
    seconds: Math.round((Date.now() - started) / 100) / 10,
    failures: report.failures,
  };
  out.write(`${JSON.stringify(summary)}\n`);
  return report.failures.length === 0 ? 0 : 1;
}
