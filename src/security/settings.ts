import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { parseRanges, type Range } from '../lib/ip.js';
import type { Metrics } from '../telemetry/metrics.js';
import { loadSigningKeys } from '../signed/keys.js';
import { UrlSigner } from '../signed/signer.js';
import { TokenVerifier } from './jwt.js';
import { Policy } from './policy.js';

/**
 * Everything derived from one configuration. A reload builds new settings and swaps them whole,
 * so a request sees one version from its start to its end (it holds the settings it began with).
 */
export interface Settings {
  readonly config: GatewayConfig;
  readonly policy: Policy;
  readonly verifier: TokenVerifier;
  readonly trustedProxies: readonly Range[];
  /** Signs and verifies file URLs; absent while `signedUrls.enabled` is false. */
  readonly signer: UrlSigner | undefined;
}

export function buildSettings(config: GatewayConfig, log?: Logger, previous?: Settings, metrics?: Metrics): Settings {
  // Keep the verifier (and its caches) across reloads unless what it verifies against may have
  // changed. A jwksFile is re-read on every reload: rotating a key means rewriting that file in
  // place, and a revoked key must stop working when the operator says reload.
  const sameAuth = previous && !config.auth.jwksFile && JSON.stringify(previous.config.auth) === JSON.stringify(config.auth);
  return {
    config,
    policy: new Policy(config),
    verifier: sameAuth ? previous.verifier : new TokenVerifier(config.auth, Date.now, log, metrics),
    trustedProxies: parseRanges(config.server.trustedProxies),
    // Keys are re-read on every reload: a removed key stops verifying when the operator says reload.
    signer: config.signedUrls.enabled ? new UrlSigner(config.signedUrls, loadSigningKeys(config.signedUrls.keys, process.env)) : undefined,
  };
}

/** The settings in force, swapped on reload. Readers take `current` once per request. */
export class LiveSettings {
  constructor(
    private settings: Settings,
    private readonly log?: Logger,
    private readonly metrics?: Metrics,
  ) {}

  get current(): Settings {
    return this.settings;
  }

  reload(config: GatewayConfig): Settings {
    this.settings = buildSettings(config, this.log, this.settings, this.metrics);
    return this.settings;
  }
}
