// Compile-time checks (make typecheck): the config types derived from the schema say what the
// schema says, defaults included. A drift fails the type check, not a test run.
import type { GatewayConfig, RuleConfig, RuleRequire, StorageConfig } from '../../src/config/types.js';
import type { InteractionKind } from '../../src/fhir/interaction.js';
type Eq<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const a: Eq<GatewayConfig['server']['port'], number> = true;
const b: Eq<GatewayConfig['upstream']['url'], string | undefined> = true;
const c: Eq<RuleRequire['https'], boolean> = true;
const d: Eq<NonNullable<RuleConfig['require']>['https'], boolean | undefined> = true;
const e: Eq<StorageConfig['driver'], 'filesystem' | 's3' | 'azure'> = true;
const f: Eq<GatewayConfig['content']['allowedTypes'][string], readonly string[]> = true;
// The rule schema's interaction names are exactly the ones the classifier produces.
const g: Eq<NonNullable<RuleConfig['match']['interactions']>[number], InteractionKind> = true;
const h: Eq<GatewayConfig['server']['spoolDir'], string> = true;
const i: Eq<NonNullable<GatewayConfig['server']['tls']>['minVersion'], 'TLSv1.2' | 'TLSv1.3'> = true;
const j: Eq<NonNullable<StorageConfig['s3']>['prefix'], string> = true;
const k: Eq<GatewayConfig['logging']['level'], 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'> = true;
export { a, b, c, d, e, f, g, h, i, j, k };
