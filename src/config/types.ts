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

export interface InflateConfig {
  readonly enabled: boolean;
  readonly maxBytesPerResponse: number;
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
  readonly inflate?: Partial<InflateConfig>;
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
  readonly storage: StorageConfig;
  readonly externalize: { readonly minBytes: number };
  readonly inflate: InflateConfig;
  readonly content: { readonly allowedTypes: Readonly<Record<string, readonly string[]>> };
  readonly logging: { readonly level: string };
}

export interface StorageConfig {
  readonly driver: 'filesystem' | 's3' | 'azure';
  readonly filesystem: {
    readonly directory: string;
    readonly encryption?: {
      readonly activeKey: string;
      /** Key material: 32 bytes, base64, in a file or an environment variable (never in the policy file). */
      readonly keys: readonly { readonly id: string; readonly file?: string; readonly env?: string }[];
    };
  };
  readonly s3?: {
    readonly bucket: string;
    readonly region: string;
    readonly endpoint?: string;
    readonly forcePathStyle: boolean;
    readonly prefix: string;
    /** Names of the variables holding static credentials; without them the SDK's default chain (env, profile, instance role) applies. */
    readonly accessKeyIdEnv?: string;
    readonly secretAccessKeyEnv?: string;
    readonly serverSideEncryption?: 'AES256' | 'aws:kms' | 'aws:kms:dsse';
    readonly sseKmsKeyId?: string;
    readonly partSizeBytes: number;
    readonly queueSize: number;
  };
  readonly azure?: {
    readonly container: string;
    readonly prefix: string;
    readonly connectionStringEnv?: string;
    readonly accountName?: string;
    readonly accountKeyEnv?: string;
    readonly url?: string;
    readonly sasTokenEnv?: string;
    readonly blockSizeBytes: number;
    readonly concurrency: number;
  };
}
