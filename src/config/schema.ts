/**
 * JSON Schema of the policy file. Ajv applies the defaults written here, so every default the
 * gateway runs with is visible in one place (and in docs/configuration.md).
 * Rule `require`/`limits` fields deliberately have no defaults: an unset field inherits from
 * `defaultRule`, which does have them (see src/security/policy.ts).
 */

import { DURATION_PATTERN } from '../lib/duration.js';
import { storageSchema } from './storage-schema.js';

const cidrList = { type: 'array', items: { type: 'string', minLength: 1 }, default: [] } as const;
const stringList = { type: 'array', items: { type: 'string', minLength: 1 } } as const;
/** A listener of the gateway's own besides the public one (admin API, observability): loopback unless said otherwise. */
const listenSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: {
    host: { type: 'string', minLength: 1, default: '127.0.0.1' },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
  },
} as const;

/** Only asymmetric algorithms: a JWKS holds public keys, and HS* against a public key is the classic confusion attack. */
export const ALLOWED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

export const INTERACTIONS = [
  'read',
  'vread',
  'update',
  'patch',
  'delete',
  'create',
  'search',
  'history',
  'operation',
  'batch',
  'transaction',
  'capabilities',
] as const;

/**
 * The same property schemas with a `default` each: `defaultRule` has them, rules do not (an
 * unset rule field inherits from `defaultRule`). Typed so the defaults reach the derived types.
 */
function withDefaults<P extends Record<string, object>, D extends { readonly [K in keyof P]: unknown }>(
  props: P,
  defaults: D,
): { readonly [K in keyof P]: P[K] & { readonly default: D[K] } } {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(props)) out[k] = { ...props[k], default: defaults[k] };
  return out as { readonly [K in keyof P]: P[K] & { readonly default: D[K] } };
}

const requireProps = {
  https: { type: 'boolean' },
  auth: { type: 'boolean' },
  scopes: stringList,
  smart: { type: 'boolean' },
  ipAllow: stringList,
  ipDeny: stringList,
} as const;
// Secure by default, and equal to the shipped policies/default.yaml (test/config/default-policy.test.ts).
const requireDefaults = { https: true, auth: true, scopes: [], smart: true, ipAllow: [], ipDeny: [] } as const;

const limitsProps = { maxRequestBytes: { type: 'integer', minimum: 0 } } as const;
const limitsDefaults = { maxRequestBytes: 10 * 1024 * 1024 } as const;

const inflateProps = { enabled: { type: 'boolean' }, maxBytesPerResponse: { type: 'integer', minimum: 0 } } as const;
const inflateDefaults = { enabled: true, maxBytesPerResponse: 10 * 1024 * 1024 } as const;

export const ruleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'match'],
  properties: {
    name: { type: 'string', minLength: 1 },
    match: {
      type: 'object',
      additionalProperties: false,
      properties: {
        interactions: { type: 'array', items: { enum: [...INTERACTIONS] }, minItems: 1 },
        resourceTypes: { type: 'array', items: { type: 'string', pattern: '^([A-Z][A-Za-z]+|\\*)$' }, minItems: 1 },
        operations: { type: 'array', items: { type: 'string', pattern: '^[a-zA-Z][a-zA-Z0-9_-]*$' }, minItems: 1 },
      },
    },
    require: { type: 'object', additionalProperties: false, properties: requireProps },
    limits: { type: 'object', additionalProperties: false, properties: limitsProps },
    forwardAuthorization: { type: 'boolean' },
    // Overrides the top-level `inflate` for the interactions this rule matches.
    inflate: { type: 'object', additionalProperties: false, properties: inflateProps },
  },
} as const;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    include: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    server: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        host: { type: 'string', default: '0.0.0.0' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
        publicBaseUrl: { type: 'string', pattern: '^https?://' },
        trustedProxies: cidrList,
        requestTimeoutMs: { type: 'integer', minimum: 1000, default: 300_000 },
        // SIGTERM/SIGINT: stop accepting, close idle connections, let exchanges under way finish
        // for at most this long, then cut what is left and exit. A second signal exits at once.
        shutdownTimeoutMs: { type: 'integer', minimum: 0, maximum: 3_600_000, default: 30_000 },
        spoolDir: { type: 'string' },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['certFile', 'keyFile'],
          properties: {
            certFile: { type: 'string', minLength: 1 },
            keyFile: { type: 'string', minLength: 1 },
            minVersion: { enum: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.3' },
          },
        },
      },
    },
    upstream: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        connectTimeoutMs: { type: 'integer', minimum: 1, default: 5_000 },
        timeoutMs: { type: 'integer', minimum: 1, default: 60_000 },
        maxSockets: { type: 'integer', minimum: 1, default: 256 },
        rejectUnauthorized: { type: 'boolean', default: true },
        aliases: { type: 'array', items: { type: 'string', pattern: '^https?://' }, default: [] },
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        issuers: { ...stringList, default: [] },
        audiences: { ...stringList, default: [] },
        jwksUri: { type: 'string', pattern: '^https?://' },
        jwksFile: { type: 'string', minLength: 1 },
        algorithms: { type: 'array', items: { enum: [...ALLOWED_ALGORITHMS] }, minItems: 1, default: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
        clockToleranceSeconds: { type: 'integer', minimum: 0, maximum: 300, default: 30 },
        jwksCooldownMs: { type: 'integer', minimum: 0, default: 30_000 },
        jwksCacheMaxAgeMs: { type: 'integer', minimum: 1_000, default: 600_000 },
        jwksTimeoutMs: { type: 'integer', minimum: 100, default: 5_000 },
        patientClaim: { type: 'string', default: 'patient' },
        typ: { type: 'string', minLength: 1 },
        tokenCache: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            maxEntries: { type: 'integer', minimum: 0, default: 10_000 },
            maxAgeSeconds: { type: 'integer', minimum: 0, default: 60 },
          },
        },
      },
    },
    rules: { type: 'array', items: ruleSchema, default: [] },
    defaultRule: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        require: { type: 'object', additionalProperties: false, properties: withDefaults(requireProps, requireDefaults), default: {} },
        limits: { type: 'object', additionalProperties: false, properties: withDefaults(limitsProps, limitsDefaults), default: {} },
        forwardAuthorization: { type: 'boolean', default: false },
      },
    },
    bundles: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxEntries: { type: 'integer', minimum: 1, default: 1000 },
      },
    },
    storage: storageSchema,
    // The retention sweeper (`fhir-binary-gateway sweep`, docs/operations.md). Durations in hours.
    retention: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // Crash leftovers: store temp files, unfinished multipart uploads, spooled bodies (seed: temporary uploads 24 h).
        temporaryHours: { type: 'number', exclusiveMinimum: 0, maximum: 87600, default: 24 },
        // A blob still `pending` this long after its write is reconciled with the upstream:
        // linked when a resource there refers to it, deleted when none does.
        pendingGraceHours: { type: 'number', exclusiveMinimum: 0, maximum: 87600, default: 1 },
        // One sweep at a time across replicas: each period has one claim in the store; a sweep
        // stops at its period's end.
        sweepPeriodMinutes: { type: 'integer', minimum: 1, maximum: 10080, default: 60 },
        // Also sweep from inside the gateway, once per period (replicas take turns through the claim).
        schedule: { type: 'boolean', default: false },
        // A linked blob is checked against its resource's current version at most this often; one
        // no current version refers to any more (the resource was deleted or now points elsewhere)
        // becomes `unlinked` and is kept for its class.
        recheckHours: { type: 'number', exclusiveMinimum: 0, maximum: 87600, default: 24 },
        // Unlinked blobs no class matches (seed: unlinked files 7 days).
        unlinkedDays: { type: 'number', exclusiveMinimum: 0, maximum: 36500, default: 7 },
        // Longer retention of unlinked blobs by what they were: the longest match wins (seed: clinical
        // documents 7 years). Each list present must match; an empty class matches every blob.
        classes: {
          type: 'array',
          default: [{ name: 'clinical-documents', keepDays: 2557, resourceTypes: ['DocumentReference', 'DiagnosticReport'] }],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'keepDays'],
            properties: {
              name: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
              // Counted from the blob's write; an unlinked blob is in any case kept unlinkedDays.
              keepDays: { type: 'number', exclusiveMinimum: 0, maximum: 36500 },
              resourceTypes: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[A-Z][A-Za-z]{0,63}$' } },
              // `system|code` or `code`: any coding of the resource's `category`.
              categories: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              // The upload's purpose (`X-File-Metadata: {"purpose": …}`, docs/binary.md).
              purposes: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' } },
            },
          },
        },
      },
    },
    // The admin API (docs/operations.md): find, list, link, quarantine and delete blobs.
    admin: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        // The scope a token must carry (its `scope` or `scp` claim), beside the auth section's checks.
        scope: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$', default: 'gateway/admin' },
        // Client addresses (IPs or CIDR ranges) allowed; empty: any.
        ipAllow: { type: 'array', items: { type: 'string' }, default: [] },
        // Its own listener (recommended: a port only operators reach); without it, the main
        // listener serves it under /_admin/.
        listen: listenSchema,
      },
    },
    // The audit trail (docs/operations.md): one record per request that touched stored content
    // or a binary-bearing resource type, including refusals; its own destination and queue.
    audit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // `stdout`: the gateway's own output stream, as lines of their own shape (`"audit": 1`);
        // `file`: appended to `file`, apart from every other line; `off`.
        destination: { enum: ['stdout', 'file', 'off'], default: 'stdout' },
        file: { type: 'string', minLength: 1 },
        // Records waiting for a slow destination; past this they are dropped, counted and the count logged.
        queueRecords: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
        // Also posted to a FHIR server as AuditEvents in the IHE BALP shape, in batch Bundles.
        fhir: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: false },
            // The FHIR base the Bundles go to; default: upstream.url.
            url: { type: 'string', pattern: '^https?://' },
            // Name of an environment variable holding a bearer token for it.
            bearerTokenEnv: { type: 'string', pattern: '^[A-Z_][A-Z0-9_]*$' },
            batchSize: { type: 'integer', minimum: 1, maximum: 1000, default: 50 },
            flushMs: { type: 'integer', minimum: 10, maximum: 600000, default: 2000 },
            queueRecords: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
          },
        },
      },
    },
    externalize: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // Attachment data at or above this many decoded bytes goes to the object store; smaller
        // data stays inline (still checked). A PATCH body above it is refused: a patch could
        // otherwise carry attachment data past the rewrite.
        minBytes: { type: 'integer', minimum: 0, maximum: 1073741824, default: 65536 },
      },
    },
    // Responses: stored attachment content goes back inline while the decoded total stays within
    // maxBytesPerResponse (in document order); the rest, and inline data the upstream holds past
    // the budget, become links. `enabled: false` links every stored attachment.
    inflate: { type: 'object', additionalProperties: false, properties: withDefaults(inflateProps, inflateDefaults), default: {} },
    // Signed file URLs (docs/signed-urls.md): links to one stored blob a browser can follow
    // without the bearer token. Keys come from files or the environment, never from here.
    signedUrls: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        keys: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id'],
            properties: {
              id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
              file: { type: 'string', minLength: 1 },
              env: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
            },
          },
        },
        // The key new URLs are signed with; the others still verify until removed.
        activeKey: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
        defaultWindow: { type: 'string', pattern: DURATION_PATTERN, default: '15m' },
        maxWindow: { type: 'string', pattern: DURATION_PATTERN, default: '1h' },
        // Start times are rounded down to this (at most a quarter of the window): the same
        // request within one bucket gets the same URL, so browser caches work.
        bucket: { type: 'string', pattern: DURATION_PATTERN, default: '1m' },
        clockSkew: { type: 'string', pattern: DURATION_PATTERN, default: '30s' },
        policies: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'permissions', 'maxWindow'],
            properties: {
              id: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
              permissions: { enum: ['r', 'w', 'rw'] },
              maxWindow: { type: 'string', pattern: DURATION_PATTERN },
              notAfter: { type: 'string', pattern: '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z$' },
            },
          },
        },
        // Links past the inflate budget (attachment `url`) as signed URLs a browser can follow.
        links: { type: 'boolean', default: false },
        // The policy URLs are signed under when the request names none (absent: under none).
        defaultPolicy: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
        // URLs the store serves itself (`$file-url?via=store`: S3 presigned, Azure SAS). A URL
        // needing a constraint the store cannot enforce is refused unless its gap is accepted.
        store: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: false },
            acceptGaps: { type: 'array', items: { enum: ['ip', 'policy', 'https', 'withdraw'] }, uniqueItems: true, default: [] },
          },
        },
      },
    },
    // The files GraphQL API (docs/graphql.md): uploadFile, file, refreshFileUrl; seed 000's
    // upload workflow. Served by the gateway itself at `path` (outside the FHIR base), behind the
    // same security pipeline as every request (the interaction `operation: graphql-api`).
    graphql: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        path: { type: 'string', pattern: '^/[A-Za-z0-9._~/-]{1,128}$', default: '/graphql' },
        // The operations document (a JSON body, or the `operations` part of an upload), in bytes.
        maxDocumentBytes: { type: 'integer', minimum: 1024, maximum: 1048576, default: 65536 },
        // Selection depth and field count an operation may have (fragments expanded).
        maxDepth: { type: 'integer', minimum: 2, maximum: 64, default: 10 },
        maxFields: { type: 'integer', minimum: 1, maximum: 10000, default: 200 },
        // Fields at an operation's top level: each is an upload, a bind, a URL or a look-up (calls to the store or the FHIR server).
        maxRootFields: { type: 'integer', minimum: 1, maximum: 100, default: 8 },
        // File parts one upload request may carry.
        maxFiles: { type: 'integer', minimum: 1, maximum: 64, default: 4 },
        introspection: { type: 'boolean', default: false },
        // A GraphiQL page at the path (GET, from a browser) for trying queries: demo mode turns it on.
        explorer: { type: 'boolean', default: false },
        // Named scopes the seed asks for: uploading files, and creating resources with them.
        uploadScope: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$', default: 'files.write' },
        writeScope: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$', default: 'fhir.write' },
        // The privileged scope fileTypeOverride needs (a type past the allow-list; never active content).
        overrideScope: { type: 'string', pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]{1,128}$', default: 'files.override' },
      },
    },
    content: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // The purposes X-File-Metadata may name (`purpose`); empty: any well-formed one.
        purposes: { type: 'array', items: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' }, uniqueItems: true, default: [] },
        // Per resource type, the media types an upload may have (`type/*` wildcards allowed).
        allowedTypes: {
          type: 'object',
          propertyNames: { pattern: '^[A-Z][A-Za-z]+$' },
          additionalProperties: { type: 'array', items: { type: 'string', pattern: '^[a-z0-9.+-]+/([a-z0-9.+-]+|\\*)$' } },
          default: {
            DocumentReference: ['application/pdf', 'text/plain', 'image/*'],
            Media: ['audio/*', 'video/*', 'image/dicom'],
            Binary: ['application/pdf', 'text/plain', 'image/*', 'audio/*', 'video/*', 'image/dicom'],
          },
        },
        // Cache-Control of content served as itself (raw Binary, $binary-access-read, raw Media):
        // PHI must not stay in browser or proxy caches, so only `no-store` or a private cache
        // for a bounded time (a viewer that pages through one document) can be chosen.
        cacheControl: { type: 'string', pattern: '^(no-store|private, max-age=(0|[1-9][0-9]{0,7}))$', default: 'no-store' },
      },
    },
    // What each operation may return, for the type-set authorization (docs/security.md, "What a
    // request can reach"): `own` (its own type), `any`, or `{ types: [...] }`. Over the built-ins;
    // an operation named nowhere may return any type.
    operations: {
      type: 'object',
      propertyNames: { pattern: '^[a-zA-Z][a-zA-Z0-9_-]*$' },
      additionalProperties: {
        anyOf: [
          { enum: ['own', 'any'] },
          {
            type: 'object',
            additionalProperties: false,
            required: ['types'],
            properties: { types: { type: 'array', items: { type: 'string', pattern: '^[A-Z][A-Za-z]+$' }, minItems: 1 } },
          },
        ],
      },
      default: {},
    },
    // What operators watch: a listener of its own (never the public port) with Prometheus
    // metrics, a readiness answer that names each failing dependency, and liveness; traces.
    observability: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: listenSchema,
        // GET /metrics on the listener (Prometheus text format).
        metrics: { type: 'boolean', default: true },
        // Which dependency checks make the gateway not ready when they fail (all, by default:
        // ready means every upload and every token check can work); the others make it
        // `degraded` (reported, logged) but leave it in service. Narrow it to [upstream] where the
        // store and the identity provider are shared by every replica and an outage of theirs
        // should not take all replicas out at once (docs/operations.md).
        readiness: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            gating: {
              type: 'array',
              items: { enum: ['upstream', 'store', 'jwks'] },
              uniqueItems: true,
              default: ['upstream', 'store', 'jwks'],
            },
            // How long a passing answer stands: the upstream and the keys, and the store's write
            // probe (a claim made and dropped: not on every probe; on a versioned bucket each leaves a
            // version). A failing answer is asked again after a second.
            intervalMs: { type: 'integer', minimum: 0, default: 5000 },
            storeIntervalMs: { type: 'integer', minimum: 0, default: 60000 },
          },
        },
        // OpenTelemetry spans: a server span per request, children for the upstream and the store,
        // W3C traceparent to the upstream. Exported over OTLP/HTTP when enabled (the exporter
        // packages are optional dependencies); otherwise only a tracer provider registered by the
        // host process (e.g. with --import) sees them.
        tracing: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: false },
            // `otlp`: the gateway exports over OTLP/HTTP to `endpoint` itself; `none`: spans go to
            // the tracer provider the host process registered (e.g. an SDK loaded with --import).
            exporter: { enum: ['otlp', 'none'], default: 'otlp' },
            endpoint: { type: 'string', pattern: '^https?://', default: 'http://127.0.0.1:4318/v1/traces' },
            serviceName: { type: 'string', minLength: 1, default: 'fhir-binary-gateway' },
            sampleRatio: { type: 'number', minimum: 0, maximum: 1, default: 1 },
          },
        },
      },
    },
    logging: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
  },
} as const;

/** Shape of an included file: rules only, appended in include order. */
export const includeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  properties: { rules: { type: 'array', items: ruleSchema } },
} as const;
