import { readFileSync } from 'node:fs';
import { loadConfig, type ConfigEnv } from '../config/load.js';
import { embeddedDefaults } from '../config/embedded.js';
import { ConfigError } from '../errors/catalogue.js';
import { buildSettings } from '../security/settings.js';
import { graphqlWithoutUrls } from '../config/transport.js';

/**
 * `fhir-binary-gateway --check [--config FILE]`: validates a policy the way a start would (schema,
 * semantics, rules compiled, the key set and TLS files read) without listening or touching the
 * upstream or the store, and exits: 0 with one line on stdout, or 78 with every problem (the same
 * messages a start would give). For CI and for a ConfigMap before it is rolled out.
 */
export function runCheck(values: { config?: string }, env: ConfigEnv, out: NodeJS.WritableStream = process.stdout): number {
  const { config, file } = loadConfig(values.config ?? env.GATEWAY_CONFIG, env, embeddedDefaults);
  const where = file ?? '(embedded defaults)';
  const problems: string[] = [];
  if (!config.upstream.url) problems.push(`${where}: /upstream/url: is required (or set GATEWAY_UPSTREAM_URL)`);
  let built = true;
  try {
    buildSettings(config);
  } catch (err) {
    built = false;
    problems.push(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const keys = built && config.auth.jwksFile ? keyCount(config.auth.jwksFile) : undefined;
  if (keys === 0) problems.push(`${where}: /auth/jwksFile: ${config.auth.jwksFile} holds no key: every token would be refused`);
  for (const f of [config.server.tls?.certFile, config.server.tls?.keyFile]) {
    if (f === undefined) continue;
    try {
      readFileSync(f);
    } catch (err) {
      problems.push(`${where}: /server/tls: ${f} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const urlKeys = config.signedUrls.enabled
    ? `, signed URLs: ${config.signedUrls.keys.length} keys (active ${config.signedUrls.activeKey})`
    : '';
  const noUrls = graphqlWithoutUrls(config);
  if (noUrls) out.write(`${where}: warning: ${noUrls}\n`);
  out.write(
    `${where}: OK (${config.rules.length} rules, storage ${config.storage.driver}${keys === undefined ? '' : `, ${keys} keys`}${urlKeys})\n`,
  );
  return 0;
}

function keyCount(path: string): number {
  try {
    const set = JSON.parse(readFileSync(path, 'utf8')) as { keys?: unknown };
    return Array.isArray(set.keys) ? set.keys.length : 0;
  } catch {
    return 0;
  }
}
