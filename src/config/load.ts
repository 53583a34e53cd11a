import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { configSchema, includeSchema } from './schema.js';
import { ConfigError } from './errors.js';
import { checkSemantics, type RuleOrigin } from './semantics.js';
import type { GatewayConfig } from './types.js';

const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: true, allowUnionTypes: true });
const validateConfig = ajv.compile(configSchema);
const validateInclude = ajv.compile(includeSchema);

/** Environment variables that override the file (documented in docs/configuration.md). */
export interface ConfigEnv {
  GATEWAY_CONFIG?: string | undefined;
  GATEWAY_UPSTREAM_URL?: string | undefined;
  GATEWAY_HOST?: string | undefined;
  GATEWAY_PORT?: string | undefined;
}

export interface LoadedConfig {
  readonly config: GatewayConfig;
  /** The file it came from, or undefined for the embedded defaults. */
  readonly file: string | undefined;
}

function describe(file: string, e: ErrorObject): string {
  const path = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') {
    return `${file}: ${path}: unknown key '${String(e.params['additionalProperty'])}'`;
  }
  if (e.keyword === 'enum') {
    return `${file}: ${path}: must be one of ${(e.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${file}: ${path}: ${e.message ?? 'is invalid'}`;
}

function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  try {
    return parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 }) ?? {};
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      throw new ConfigError([`${file}${pos ? `:${pos.line}:${pos.col}` : ''}: ${err.message.split('\n')[0]}`]);
    }
    throw err;
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Key paths an environment variable overrides: a problem there is the variable's, not the file's. */
const ENV_PATHS: Readonly<Record<string, keyof ConfigEnv>> = {
  '/upstream/url': 'GATEWAY_UPSTREAM_URL',
  '/server/host': 'GATEWAY_HOST',
  '/server/port': 'GATEWAY_PORT',
};

function blameEnv(problems: readonly string[], origin: string, env: ConfigEnv): string[] {
  return problems.map((p) => {
    for (const [path, name] of Object.entries(ENV_PATHS)) {
      const v = env[name];
      const overridden = name === 'GATEWAY_PORT' ? v !== undefined && v !== '' : Boolean(v);
      if (overridden && (p.startsWith(`${origin}: ${path}: `) || p.startsWith(`${origin}: ${path}/`))) return `${p} (set by ${name})`;
    }
    return p;
  });
}

function applyEnv(raw: Record<string, unknown>, env: ConfigEnv): void {
  const section = (name: string): Record<string, unknown> => {
    const s = raw[name];
    if (s === undefined) raw[name] = {};
    return raw[name] as Record<string, unknown>;
  };
  if (env.GATEWAY_UPSTREAM_URL) section('upstream')['url'] = env.GATEWAY_UPSTREAM_URL;
  if (env.GATEWAY_HOST) section('server')['host'] = env.GATEWAY_HOST;
  if (env.GATEWAY_PORT !== undefined && env.GATEWAY_PORT !== '') {
    // Left as a string when not a plain integer so the schema reports it rather than NaN slipping in.
    section('server')['port'] = /^\d+$/.test(env.GATEWAY_PORT) ? Number(env.GATEWAY_PORT) : env.GATEWAY_PORT;
  }
}

/** File paths in a policy file are relative to that file, not to wherever the gateway was started. */
function resolvePaths(obj: Record<string, unknown>, baseDir: string): void {
  const auth = obj['auth'] as Record<string, unknown>;
  if (typeof auth['jwksFile'] === 'string') auth['jwksFile'] = resolve(baseDir, auth['jwksFile']);
  const server = obj['server'] as Record<string, unknown>;
  if (typeof server['spoolDir'] === 'string') server['spoolDir'] = resolve(baseDir, server['spoolDir']);
  const fsStore = ((obj['storage'] as Record<string, unknown> | undefined)?.['filesystem'] ?? undefined) as
    Record<string, unknown> | undefined;
  if (fsStore) {
    if (typeof fsStore['directory'] === 'string') fsStore['directory'] = resolve(baseDir, fsStore['directory']);
    const keys = (fsStore['encryption'] as { keys?: unknown } | undefined)?.keys;
    if (Array.isArray(keys))
      for (const k of keys as Record<string, unknown>[]) if (typeof k['file'] === 'string') k['file'] = resolve(baseDir, k['file']);
  }
  const tls = server['tls'] as Record<string, unknown> | undefined;
  if (tls) for (const k of ['certFile', 'keyFile']) if (typeof tls[k] === 'string') tls[k] = resolve(baseDir, tls[k]);
}

/**
 * Parses, validates, applies defaults and freezes a configuration object. `raw` is consumed
 * (Ajv writes defaults into it). Includes are resolved relative to `baseDir`.
 */
export function buildConfig(raw: unknown, origin: string, baseDir: string, env: ConfigEnv = {}): GatewayConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([`${origin}: /: must be a mapping of sections (server, upstream, auth, rules, defaultRule, …)`]);
  }
  const obj = raw as Record<string, unknown>;
  applyEnv(obj, env);
  if (!validateConfig(obj)) {
    throw new ConfigError(
      blameEnv(
        (validateConfig.errors ?? []).map((e) => describe(origin, e)),
        origin,
        env,
      ),
    );
  }
  const problems: string[] = [];
  const rules = obj['rules'] as unknown[];
  const ruleOrigins: RuleOrigin[] = rules.map((_, index) => ({ file: origin, index }));
  for (const inc of obj['include'] as string[]) {
    const file = resolve(baseDir, inc);
    const incRaw = readYaml(file);
    if (!validateInclude(incRaw)) {
      problems.push(...(validateInclude.errors ?? []).map((e) => describe(file, e)));
      continue;
    }
    // Ajv's guard types incRaw from the schema loosely; name the shape it was just validated against.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    const incRules = (incRaw as { rules: unknown[] }).rules;
    // Problems found later in an included rule name that file and the rule's index in it.
    incRules.forEach((_, index) => ruleOrigins.push({ file, index }));
    rules.push(...incRules);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  resolvePaths(obj, baseDir);
  const config = obj as unknown as GatewayConfig;
  const semantic = checkSemantics(config, origin, ruleOrigins);
  if (semantic.length > 0) throw new ConfigError(blameEnv(semantic, origin, env));
  return deepFreeze(config);
}

/** Loads the configuration from `file` (or GATEWAY_CONFIG), or from `embedded` when neither is given. */
export function loadConfig(file: string | undefined, env: ConfigEnv, embedded: () => unknown): LoadedConfig {
  const path = file ?? env.GATEWAY_CONFIG;
  if (path) {
    const abs = resolve(path);
    return { config: buildConfig(readYaml(abs), abs, dirname(abs), env), file: abs };
  }
  return { config: buildConfig(embedded(), '(embedded defaults)', process.cwd(), env), file: undefined };
}
