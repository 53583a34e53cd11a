import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import type { FromSchema } from 'json-schema-to-ts';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../errors/catalogue.js';
import { configSchema, includeSchema } from './schema.js';
import { checkSemantics, type RuleOrigin } from './semantics.js';
import type { GatewayConfig, ValidatedConfig } from './types.js';

const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: true, allowUnionTypes: true });
const validateConfig = ajv.compile<ValidatedConfig>(configSchema);
const validateInclude = ajv.compile<FromSchema<typeof includeSchema>>(includeSchema);

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
      // The position leads the line already: the parser's own " at line 3, column 1:" (which
      // introduced a source excerpt, left out) would end it dangling.
      const what = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigError([`${file}${pos ? `:${pos.line}:${pos.col}` : ''}: ${what}`]);
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
function resolvePaths(c: ValidatedConfig, baseDir: string): void {
  if (c.auth.jwksFile !== undefined) c.auth.jwksFile = resolve(baseDir, c.auth.jwksFile);
  if (c.server.spoolDir !== undefined) c.server.spoolDir = resolve(baseDir, c.server.spoolDir);
  const fs = c.storage.filesystem;
  fs.directory = resolve(baseDir, fs.directory);
  for (const k of fs.encryption?.keys ?? []) if (k.file !== undefined) k.file = resolve(baseDir, k.file);
  for (const k of c.signedUrls.keys) if (k.file !== undefined) k.file = resolve(baseDir, k.file);
  if (c.audit.file !== undefined) c.audit.file = resolve(baseDir, c.audit.file);
  const tls = c.server.tls;
  if (tls) {
    tls.certFile = resolve(baseDir, tls.certFile);
    tls.keyFile = resolve(baseDir, tls.keyFile);
  }
}

/**
 * Parses, validates, applies defaults and freezes a configuration object. `raw` is consumed
 * (Ajv writes defaults into it). Includes are resolved relative to `baseDir`.
 */
export function buildConfig(raw: unknown, origin: string, baseDir: string, env: ConfigEnv = {}): GatewayConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([`${origin}: /: must be a mapping of sections (server, upstream, auth, rules, defaultRule, …)`]);
  }
  applyEnv(raw as Record<string, unknown>, env);
  if (!validateConfig(raw)) {
    throw new ConfigError(
      blameEnv(
        (validateConfig.errors ?? []).map((e) => describe(origin, e)),
        origin,
        env,
      ),
    );
  }
  const problems: string[] = [];
  const rules = raw.rules;
  const ruleOrigins: RuleOrigin[] = rules.map((_, index) => ({ file: origin, index }));
  for (const inc of raw.include) {
    const file = resolve(baseDir, inc);
    const incRaw = readYaml(file);
    if (!validateInclude(incRaw)) {
      problems.push(...(validateInclude.errors ?? []).map((e) => describe(file, e)));
      continue;
    }
    // Problems found later in an included rule name that file and the rule's index in it.
    incRaw.rules.forEach((_, index) => ruleOrigins.push({ file, index }));
    rules.push(...incRaw.rules);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  resolvePaths(raw, baseDir);
  // Defaults the schema cannot state (they depend on the machine) are resolved here, once.
  const config: GatewayConfig = { ...raw, server: { ...raw.server, spoolDir: raw.server.spoolDir ?? tmpdir() } };
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
