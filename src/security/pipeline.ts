import {
  requireAddress,
  requireBearer,
  requireDeclaredSize,
  requireScopes,
  requireTransport,
  type Check,
  type CheckInput,
} from './checks.js';
import { requireReach } from './reach.js';
import type { Settings } from './settings.js';

/**
 * The order is the architecture's: transport → IP → size → JWT → scopes, then the same for every
 * other type the request reaches (reach.ts).
 */
export const CHECKS: readonly Check[] = [requireTransport, requireAddress, requireDeclaredSize, requireBearer, requireScopes, requireReach];

/**
 * For what the gateway answers itself (the files GraphQL API): nothing is sent upstream and no
 * other type is reached, so the checks of what an upstream answer may carry (security/reach.ts)
 * have nothing to judge.
 */
export const GATEWAY_CHECKS: readonly Check[] = [requireTransport, requireAddress, requireDeclaredSize, requireBearer, requireScopes];

/** Everything but scopes: what can be decided before a Bundle's entries are known. */
export const PRE_BODY_CHECKS: readonly Check[] = [requireTransport, requireAddress, requireDeclaredSize, requireBearer];

/**
 * Runs the checks in order; the first failure throws. Synchronous (returns undefined) unless a
 * check had to wait (a token not yet in the cache), then a promise for the rest: most requests
 * pass through without allocating one.
 */
export function runChecks(input: CheckInput, settings: Settings, checks: readonly Check[] = CHECKS): Promise<void> | undefined {
  for (let i = 0; i < checks.length; i++) {
    const r = checks[i](input, settings);
    if (r) return r.then(() => runChecks(input, settings, checks.slice(i + 1)));
  }
  return undefined;
}
