import type { FromSchema } from 'json-schema-to-ts';
import type { configSchema } from './schema.js';

/**
 * The configuration's types, derived from its JSON Schema (schema.ts), so the two cannot drift:
 * a key with a `default` there is always present here (Ajv fills it in at load), one without is
 * optional. What load.ts resolves beyond the schema (the spool directory) is added on top.
 */

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** What Ajv accepts, with its defaults applied. */
export type ValidatedConfig = FromSchema<typeof configSchema>;

/** The configuration the gateway runs with: validated, defaults applied and resolved, frozen. */
export type GatewayConfig = DeepReadonly<
  Omit<ValidatedConfig, 'server'> & {
    server: Omit<ValidatedConfig['server'], 'spoolDir'> & {
      /** Where request bodies are spooled while checked: the file's setting, else the system's temp directory. */
      spoolDir: string;
    };
  }
>;

export type RuleConfig = GatewayConfig['rules'][number];
export type RuleRequire = GatewayConfig['defaultRule']['require'];
export type RuleLimits = GatewayConfig['defaultRule']['limits'];
export type InflateConfig = GatewayConfig['inflate'];
export type StorageConfig = GatewayConfig['storage'];
