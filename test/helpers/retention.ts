import { buildConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';

/** The `retention` section as a configuration without one gets it (the schema's defaults). */
export function defaultRetention(over: Partial<GatewayConfig['retention']> = {}): GatewayConfig['retention'] {
  return {
    ...buildConfig(
      { upstream: { url: 'http://127.0.0.1:1/fhir' }, auth: { jwksUri: 'http://127.0.0.1:1/jwks', issuers: ['t'], audiences: ['t'] } },
      'test',
      '/tmp',
    ).retention,
    ...over,
  };
}

/**
 * A sweep's clock, `hoursOn` from now, moved to the middle of its hour: a sweep stops in the last
 * seconds of its period (the next one may start), so a test on the real clock would flake there.
 */
export function midHour(hoursOn = 0): Date {
  const HOUR = 3_600_000;
  return new Date(Math.floor((Date.now() + hoursOn * HOUR) / HOUR) * HOUR + HOUR / 2);
}
