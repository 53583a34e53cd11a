import { GatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import { inRanges } from './ip.js';
import { bearerToken, NO_TOKEN_CHALLENGE, type TokenCacheEntry, type TokenVerifier, type VerifiedToken } from './jwt.js';
import type { EffectiveRule } from './policy.js';
import { describeRequired, missingScopes, parseScopes, smartGrants, type ScopeSet } from './scopes.js';

/** The caller's identity, filled in by the bearer check and reused by later checks and Bundle entries. */
export interface Principal {
  token: VerifiedToken | undefined;
  scopes: ScopeSet | undefined;
}

export interface CheckInput {
  readonly ctx: RequestContext;
  readonly interaction: Interaction;
  readonly rule: EffectiveRule;
  readonly authorization: string | undefined;
  /** Declared Content-Length, when the request has one. */
  readonly contentLength: number | undefined;
  readonly principal: Principal;
}

export interface PipelineDeps {
  readonly verifier: TokenVerifier;
  readonly patientClaim: string;
}

/** One check: returns nothing when satisfied, throws a GatewayError otherwise. */
export type Check = (input: CheckInput, deps: PipelineDeps) => void | Promise<void>;

const scopeCache = new WeakMap<VerifiedToken, ScopeSet>();
const WHOLE_REQUEST_EXEMPT = new Set(['capabilities', 'batch', 'transaction']);

export const requireTransport: Check = ({ ctx, rule }) => {
  if (rule.require.https && !ctx.secure) throw new GatewayError('INSECURE_TRANSPORT');
};

export const requireAddress: Check = ({ ctx, rule }) => {
  if (rule.ipDeny.length > 0 && inRanges(ctx.clientIp, rule.ipDeny)) throw new GatewayError('FORBIDDEN');
  if (rule.ipAllow.length > 0 && !inRanges(ctx.clientIp, rule.ipAllow)) throw new GatewayError('FORBIDDEN');
};

export const requireDeclaredSize: Check = ({ rule, contentLength }) => {
  if (contentLength !== undefined && contentLength > rule.limits.maxRequestBytes) {
    throw new GatewayError('PAYLOAD_TOO_LARGE', `limit is ${rule.limits.maxRequestBytes} bytes`);
  }
};

/**
 * A token that is present is always verified, even where the rule lets anonymous callers in:
 * a bad token is an error to report, not something to ignore silently.
 */
export const requireBearer: Check = ({ ctx, rule, authorization, principal }, { verifier }) => {
  if (principal.token) return undefined;
  // Fastest path: the same header as the connection's last accepted one, still valid in the cache.
  const last = ctx.connection.bearer;
  if (last !== undefined) {
    if (last.header === authorization && verifier.revalidate(last.entry)) {
      principal.token = last.entry.token;
      principal.scopes = last.scopes;
      return undefined;
    }
    // Not this request's token, or no longer good: forget it, so an idle connection does not pin
    // an old verifier (after a reload) or an expired token's claims.
    ctx.connection.bearer = undefined;
  }
  // Fast path: only tokens that passed bearerToken() and a full verification are in the cache,
  // so a hit on the text after "Bearer " proves the header is well-formed without the regex.
  if (authorization !== undefined && authorization.startsWith('Bearer ')) {
    const hit = verifier.lookup(authorization.slice(7));
    if (hit) {
      adopt(principal, hit.token, ctx, authorization, hit);
      return undefined;
    }
  }
  const token = bearerToken(authorization);
  if (token === undefined) {
    if (!rule.require.auth) return undefined;
    throw new GatewayError('TOKEN_MISSING', undefined, { headers: { 'www-authenticate': NO_TOKEN_CHALLENGE } });
  }
  // A cached verification is used synchronously; only a real one costs a promise.
  const hit = verifier.lookup(token);
  if (hit) {
    adopt(principal, hit.token, ctx, authorization!, hit);
    return undefined;
  }
  return verifier.verify(token).then((v) => adopt(principal, v, ctx, authorization!, verifier.lookup(token)));
};

/** Takes the verified token (and its parsed scopes) for this request; remembers it on the connection when it is in the cache. */
function adopt(
  principal: Principal,
  verified: VerifiedToken,
  ctx: RequestContext,
  header: string,
  entry: TokenCacheEntry | undefined,
): void {
  let scopes = scopeCache.get(verified);
  if (!scopes) {
    scopes = parseScopes(verified.claims);
    scopeCache.set(verified, scopes);
  }
  principal.token = verified;
  principal.scopes = scopes;
  if (entry?.token === verified) ctx.connection.bearer = { header, entry, scopes };
}

export const requireScopes: Check = ({ rule, interaction, principal }, { patientClaim }) => {
  const { scopes: required } = rule.require;
  // SMART defines no scope for the CapabilityStatement, and a batch/transaction is granted entry by
  // entry (each entry passes its own rule): an inherited `smart: true` must not refuse them whole.
  const smart = rule.require.smart && !WHOLE_REQUEST_EXEMPT.has(interaction.interaction);
  if (required.length === 0 && !smart) return;
  const set = principal.scopes;
  // A rule that names scopes cannot be met without a token, whatever its auth setting says.
  if (!set) throw new GatewayError('TOKEN_MISSING', undefined, { headers: { 'www-authenticate': NO_TOKEN_CHALLENGE } });
  const missing = missingScopes(set, required);
  if (missing.length > 0) throw insufficient(missing.join(' '));
  if (smart) {
    const patient = principal.token?.claims[patientClaim];
    if (!smartGrants(set, interaction, { patient: typeof patient === 'string' ? patient : undefined, deferBinaryRead: true })) {
      throw insufficient(describeRequired(interaction));
    }
  }
};

function insufficient(scope: string): GatewayError {
  const safe = scope.replace(/["\\]/g, '');
  return new GatewayError('INSUFFICIENT_SCOPE', `requires ${safe}`, {
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${safe}"` },
  });
}

/** The order is the architecture's: transport → IP → size → JWT → scopes. */
export const CHECKS: readonly Check[] = [requireTransport, requireAddress, requireDeclaredSize, requireBearer, requireScopes];

/** Everything but scopes: what can be decided before a Bundle's entries are known. */
export const PRE_BODY_CHECKS: readonly Check[] = [requireTransport, requireAddress, requireDeclaredSize, requireBearer];

/**
 * Runs the checks in order; the first failure throws. Synchronous (returns undefined) unless a
 * check had to wait (a token not yet in the cache), then a promise for the rest: most requests
 * pass through without allocating one.
 */
export function runChecks(input: CheckInput, deps: PipelineDeps, checks: readonly Check[] = CHECKS): Promise<void> | undefined {
  for (let i = 0; i < checks.length; i++) {
    const r = checks[i](input, deps);
    if (r) return r.then(() => runChecks(input, deps, checks.slice(i + 1)));
  }
  return undefined;
}
