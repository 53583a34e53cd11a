import { NO_METRICS, type Metrics } from '../telemetry/metrics.js';
import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { GatewayConfig } from '../config/types.js';
import { GatewayError, isGatewayError } from '../errors/catalogue.js';
import { keySetFetch, KEYS_RETRY_AFTER_SECONDS, KeysUnavailable, type KeysLog } from './jwks-source.js';

export interface VerifiedToken {
  readonly claims: JWTPayload;
  /** Milliseconds since the epoch. */
  readonly expiresAt: number;
  readonly notBefore: number | undefined;
  readonly kid: string | undefined;
}

/** One verified token in the cache. A connection may hold on to it (pipeline.ts) and ask {@link TokenVerifier.revalidate} instead of looking the token up again. */
export interface TokenCacheEntry {
  readonly token: VerifiedToken;
  readonly cachedUntil: number;
  readonly key: string;
  readonly owner: TokenVerifier;
  /** Set when the entry leaves the cache (expired, evicted, key withdrawn): a holder must not use it any more. */
  evicted: boolean;
}

const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
/** How often, at most, the cache compares its keys against the JWKS jose currently holds. */
const KEY_CHECK_INTERVAL_MS = 1_000;

export const INVALID_TOKEN_CHALLENGE = (description: string) =>
  `Bearer error="invalid_token", error_description="${description.replace(/["\\]/g, "'")}"`;
export const NO_TOKEN_CHALLENGE = 'Bearer realm="fhir-binary-gateway"';

/** Pulls the token out of the Authorization header; only there (RFC 6750 §2.1), never from query or body. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = BEARER.exec(header);
  if (!m) {
    throw new GatewayError('INVALID_TOKEN', 'the Authorization header is not a Bearer token', {
      headers: { 'www-authenticate': INVALID_TOKEN_CHALLENGE('malformed Authorization header') },
    });
  }
  return m[1];
}

/**
 * Verifies bearer tokens against the configured issuers, audiences, algorithms and JWKS.
 * Signature checks cost more than the rest of a proxied request (TOOLING.md: 0.62x of a bare
 * proxy when verifying every request), so verified tokens are cached, bounded in count and age;
 * a hit still checks exp/nbf against the clock, and entries signed by a key that has left the
 * JWKS are dropped as soon as jose's copy of the set changes.
 */
export class TokenVerifier {
  private readonly keys: JWTVerifyGetKey;
  private readonly remote: ReturnType<typeof createRemoteJWKSet> | undefined;
  private readonly cache = new Map<string, TokenCacheEntry>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly toleranceMs: number;
  private knownKids: ReadonlySet<string> | undefined;
  private lastKeyCheck = 0;

  /** Keys in the jwksFile (undefined: another source). */
  private readonly fileKeys: number | undefined;

  constructor(
    private readonly auth: GatewayConfig['auth'],
    private readonly now: () => number = Date.now,
    /** Where a failure to fetch the JWKS is reported (once per failure, at warn). */
    log?: KeysLog,
    /** Counts key set fetches and cache hits (the observability listener's metrics). */
    private readonly metrics: Pick<Metrics, 'jwksFetch' | 'tokenCache'> = NO_METRICS,
  ) {
    this.maxEntries = auth.tokenCache.maxEntries;
    this.maxAgeMs = auth.tokenCache.maxAgeSeconds * 1000;
    this.toleranceMs = auth.clockToleranceSeconds * 1000;
    if (auth.jwksUri) {
      this.remote = createRemoteJWKSet(new URL(auth.jwksUri), {
        cooldownDuration: auth.jwksCooldownMs,
        cacheMaxAge: auth.jwksCacheMaxAgeMs,
        timeoutDuration: auth.jwksTimeoutMs,
        [customFetch]: keySetFetch({ uri: auth.jwksUri, cooldownMs: auth.jwksCooldownMs, timeoutMs: auth.jwksTimeoutMs }, log, now, (ok) =>
          this.metrics.jwksFetch(ok),
        ),
      });
      this.keys = this.remote;
    } else if (auth.jwksFile) {
      const set = JSON.parse(readFileSync(auth.jwksFile, 'utf8')) as JSONWebKeySet;
      this.keys = createLocalJWKSet(set);
      this.fileKeys = Array.isArray(set.keys) ? set.keys.length : 0;
    } else {
      // No key source: every token is refused rather than trusted.
      this.keys = async () => {
        throw new joseErrors.JWKSNoMatchingKey();
      };
    }
  }

  /**
   * The token from the cache when it is there and still valid, synchronously: the common case
   * costs no promise. Undefined means "verify it" (verify()).
   */
  cached(token: string): VerifiedToken | undefined {
    return this.lookup(token)?.token;
  }

  /** The cache entry for a token when it is there and still valid; undefined means "verify it". */
  lookup(token: string): TokenCacheEntry | undefined {
    const hit = this.cache.get(token);
    return hit && this.revalidate(hit) ? hit : undefined;
  }

  /**
   * Readiness: there are keys to verify with — the file's, or the provider's set, fetched at least
   * once (now, if it never was: a gateway whose identity provider cannot be reached is not ready).
   * Rejects with why not.
   */
  async ready(): Promise<void> {
    if (this.fileKeys === 0) throw new Error('the key file holds no key');
    if (!this.remote || this.remote.jwks()) return;
    await this.remote.reload();
    if (!this.remote.jwks()) throw new Error('no key set fetched');
  }

  /**
   * Whether an entry obtained earlier is still good: in this verifier's cache (not evicted, not
   * from a verifier a reload replaced), its cache age and the token's exp/nbf still valid. Costs
   * no hashing of the token, which for a long JWT is most of the cost of a lookup.
   */
  revalidate(entry: TokenCacheEntry): boolean {
    if (entry.evicted || entry.owner !== this) return false;
    const now = this.now();
    // jose's set may have lost this entry's key since it was cached (a refresh caused by some
    // other token, possibly one that failed): hits look too, or they would outlive the key.
    this.checkKeys(now);
    if (!entry.evicted && now < entry.cachedUntil && this.timeValid(entry.token, now)) {
      this.metrics.tokenCache(true);
      return true;
    }
    this.evict(entry.key);
    return false;
  }

  async verify(token: string): Promise<VerifiedToken> {
    const hit = this.cached(token);
    if (hit) return hit;
    const now = this.now();
    const verified = await this.verifyFully(token);
    this.checkKeys(now);
    if (this.maxEntries > 0 && this.maxAgeMs > 0) {
      if (this.cache.size >= this.maxEntries) {
        // Map iteration order is insertion order: drop the oldest entry.
        const oldest = this.cache.keys().next();
        if (!oldest.done) this.evict(oldest.value);
      }
      this.evict(token);
      this.cache.set(token, { token: verified, cachedUntil: now + this.maxAgeMs, key: token, owner: this, evicted: false });
    }
    return verified;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  private evict(key: string): void {
    const entry = this.cache.get(key);
    if (!entry) return;
    entry.evicted = true;
    this.cache.delete(key);
  }

  private timeValid(t: VerifiedToken, now: number): boolean {
    if (now >= t.expiresAt + this.toleranceMs) return false;
    if (t.notBefore !== undefined && now < t.notBefore - this.toleranceMs) return false;
    return true;
  }

  private checkKeys(now: number): void {
    if (!this.remote || now - this.lastKeyCheck < KEY_CHECK_INTERVAL_MS) return;
    this.lastKeyCheck = now;
    const set = this.remote.jwks();
    if (!set) return;
    const kids = kidsOf(set);
    const before = this.knownKids;
    this.knownKids = kids;
    if (!before) return;
    for (const [tok, entry] of this.cache) {
      if (entry.token.kid !== undefined && !kids.has(entry.token.kid)) this.evict(tok);
    }
  }

  private async verifyFully(token: string): Promise<VerifiedToken> {
    this.metrics.tokenCache(false);
    try {
      const { payload, protectedHeader } = await jwtVerify(token, this.keys, {
        issuer: [...this.auth.issuers],
        audience: [...this.auth.audiences],
        algorithms: [...this.auth.algorithms],
        clockTolerance: this.auth.clockToleranceSeconds,
        // jose only checks exp when present; an access token without one would never expire.
        requiredClaims: ['exp'],
        ...(this.auth.typ ? { typ: this.auth.typ } : {}),
        currentDate: new Date(this.now()),
      });
      // jose checks iat only against a maxTokenAge; a token minted "in the future" (a skewed or
      // compromised issuer, a token made to outlive its exp-based rotation) is not a valid one.
      if (typeof payload.iat === 'number' && payload.iat * 1000 > this.now() + this.toleranceMs) {
        throw refusal('token issued in the future');
      }
      return {
        claims: payload,
        expiresAt: (payload.exp as number) * 1000,
        notBefore: typeof payload.nbf === 'number' ? payload.nbf * 1000 : undefined,
        kid: protectedHeader.kid,
      };
    } catch (err) {
      if (isGatewayError(err)) throw err;
      // The keys could not be had: whether the token is good is unknown, so it is not called bad
      // (a 401 makes clients throw their token away and send users to log in again).
      if (err instanceof KeysUnavailable || err instanceof joseErrors.JWKSTimeout) {
        throw new GatewayError('AUTH_UNAVAILABLE', undefined, {
          cause: err,
          headers: { 'retry-after': String(KEYS_RETRY_AFTER_SECONDS) },
        });
      }
      throw invalidToken(err, token);
    }
  }
}

function kidsOf(set: JSONWebKeySet): ReadonlySet<string> {
  return new Set(set.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string'));
}

/** Maps jose's errors to a client-safe description; never echoes the token or its claims. */
function invalidToken(err: unknown, token: string): GatewayError {
  let description = 'token verification failed';
  if (err instanceof joseErrors.JWTExpired) description = 'token expired';
  else if (err instanceof joseErrors.JWTClaimValidationFailed) {
    description = err.claim === 'nbf' ? 'token not yet valid' : `claim '${err.claim}' is invalid or missing`;
  } else if (err instanceof joseErrors.JWKSNoMatchingKey) description = 'no matching signing key';
  else if (err instanceof joseErrors.JOSEAlgNotAllowed) description = 'signing algorithm not allowed';
  else if (err instanceof joseErrors.JWSSignatureVerificationFailed) description = 'signature verification failed';
  else if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) description = 'malformed token';
  else if (err instanceof joseErrors.JOSENotSupported) description = 'unsupported token';
  else {
    // alg "none" and friends: decodeProtectedHeader tells us which without trusting anything.
    try {
      if (decodeProtectedHeader(token).alg === 'none') description = 'signing algorithm not allowed';
    } catch {
      description = 'malformed token';
    }
  }
  return refusal(description, err);
}

/** The 401 for a token that is not valid, its description in both message and challenge. */
function refusal(description: string, cause?: unknown): GatewayError {
  return new GatewayError('INVALID_TOKEN', description, {
    ...(cause === undefined ? {} : { cause }),
    headers: { 'www-authenticate': INVALID_TOKEN_CHALLENGE(description) },
  });
}
