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
