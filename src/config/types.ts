import type { InteractionKind } from '../fhir/interaction.js';

/** The configuration after validation, defaults and freezing (see schema.ts for the defaults). */
export interface RuleRequire {
  readonly https: boolean;
  readonly auth: boolean;
  readonly scopes: readonly string[];
  readonly smart: boolean;
  readonly ipAllow: readonly string[];
  readonly ipDeny: readonly string[];
}

export interface RuleLimits {
  readonly maxRequestBytes: number;
}

export interface RuleConfig {
  readonly name: string;
  readonly match: {
    readonly interactions?: readonly InteractionKind[];
    readonly resourceTypes?: readonly string[];
    readonly operations?: readonly string[];
  };
  readonly require?: Partial<RuleRequire>;
  readonly limits?: Partial<RuleLimits>;
  readonly forwardAuthorization?: boolean;
}

export interface GatewayConfig {
  readonly include: readonly string[];
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly publicBaseUrl?: string;
    readonly trustedProxies: readonly string[];
    readonly requestTimeoutMs: number;
    readonly spoolDir?: string;
    readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly minVersion: 'TLSv1.2' | 'TLSv1.3' };
  };
  readonly upstream: {
    readonly url?: string;
    readonly connectTimeoutMs: number;
    readonly timeoutMs: number;
    readonly maxSockets: number;
    readonly rejectUnauthorized: boolean;
    /** Other base URLs the upstream calls itself in Location headers (e.g. HAPI's server_address). */
    readonly aliases: readonly string[];
  };
  readonly auth: {
    readonly issuers: readonly string[];
    readonly audiences: readonly string[];
    readonly jwksUri?: string;
    readonly jwksFile?: string;
    readonly algorithms: readonly string[];
    readonly clockToleranceSeconds: number;
    readonly jwksCooldownMs: number;
    readonly jwksCacheMaxAgeMs: number;
    readonly jwksTimeoutMs: number;
    readonly patientClaim: string;
    /** Required JWS `typ` header, e.g. `at+jwt` (RFC 9068), so ID tokens are not taken for access tokens. */
    readonly typ?: string;
    readonly tokenCache: { readonly maxEntries: number; readonly maxAgeSeconds: number };
  };
  readonly rules: readonly RuleConfig[];
  readonly defaultRule: {
    readonly require: RuleRequire;
    readonly limits: RuleLimits;
    readonly forwardAuthorization: boolean;
  };
  readonly bundles: { readonly maxEntries: number };
  readonly logging: { readonly level: string };
}
