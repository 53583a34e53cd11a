import { GatewayError } from '../errors/catalogue.js';
import type { Interaction } from '../fhir/interaction.js';
import { inRanges } from '../lib/ip.js';
import type { RequestContext } from './client.js';
import { bearerToken, NO_TOKEN_CHALLENGE, type TokenCacheEntry, type VerifiedToken } from './jwt.js';
import type { EffectiveRule } from './policy.js';
import { describeRequired, missingScopes, parseScopes, smartGrants, type ScopeSet } from './scopes.js';
import type { Settings } from './settings.js';

/**
 * The checks of the security pipeline (ARCHITECTURE.md), each `(input, settings) → ok | throws`:
 * transport, client address (IP ranges), declared size, bearer token, scopes. The order they run
 * in is pipeline.ts's.
 */

/** Who is asking: filled in by the bearer check, reused by later checks, Bundle entries and the handlers. */
export interface Principal {
  token: VerifiedToken | undefined;
  scopes: ScopeSet | undefined;
  /** The token's patient launch context (the claim `auth.patientClaim` names), when it is a string. */
  patient: string | undefined;
  /**
   * Granted only if the resource read is in the patient's compartment, which the request cannot
   * show: the flow asks the upstream before forwarding (SecurityContextGuard.requirePatientRead).
   */
  compartmentRead?: boolean;
  /**
   * A write whose answer carries the resource, where a rule that governs reading its type refuses
   * the caller (security/reach.ts): the write goes ahead, its answer without the resource.
   */
  withholdAnswer?: boolean;
  /** A page of an earlier search (fhir/reach.ts `paged`): the types its answer may carry, those the caller may read (security/reach.ts). */
  pageTypes?: ReadonlySet<string>;
}

export function newPrincipal(): Principal {
  return { token: undefined, scopes: undefined, patient: undefined };
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

/** One check: returns nothing when satisfied, throws a GatewayError otherwise. */
export type Check = (input: CheckInput, settings: Settings) => void | Promise<void>;

const scopeCache = new WeakMap<VerifiedToken, ScopeSet>();
const WHOLE_REQUEST_EXEMPT = new Set(['capabilities', 'batch', 'transaction']);

// Synchronous (typed so): a signed URL's follow runs these two alone, without the pipeline.
export const requireTransport = (({ ctx, rule }: Pick<CheckInput, 'ctx' | 'rule'>): void => {
  if (rule.require.https && !ctx.secure) throw new GatewayError('INSECURE_TRANSPORT');
}) satisfies Check;

export const requireAddress = (({ ctx, rule }: Pick<CheckInput, 'ctx' | 'rule'>): void => {
  if (rule.ipDeny.length > 0 && inRanges(ctx.clientIp, rule.ipDeny)) throw new GatewayError('FORBIDDEN');
  if (rule.ipAllow.length > 0 && !inRanges(ctx.clientIp, rule.ipAllow)) throw new GatewayError('FORBIDDEN');
}) satisfies Check;

export const requireDeclaredSize: Check = ({ rule, contentLength }) => {
  if (contentLength !== undefined && contentLength > rule.limits.maxRequestBytes) {
    throw new GatewayError(
      'PAYLOAD_TOO_LARGE',
      `limit is ${rule.limits.maxRequestBytes} bytes (limits.maxRequestBytes of rule '${rule.name}')`,
    );
  }
};

/**
 * A token that is present is always verified, even where the rule lets anonymous callers in:
 * a bad token is an error to report, not something to ignore silently.
 */
export const requireBearer: Check = ({ ctx, rule, authorization, principal }, settings) => {
  if (principal.token) return undefined;
  const verifier = settings.verifier;
  const claim = settings.config.auth.patientClaim;
  // Fastest path: the same header as the connection's last accepted one, still valid in the cache.
  const last = ctx.connection.bearer;
  if (last !== undefined) {
    if (last.header === authorization && verifier.revalidate(last.entry)) {
      principal.token = last.entry.token;
      principal.scopes = last.scopes;
      principal.patient = last.patient;
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
      adopt(principal, hit.token, ctx, authorization, hit, claim);
      return undefined;
    }
  }
  const token = bearerToken(authorization);
  if (token === undefined) {
    if (!rule.require.auth) return undefined;
    throw tokenMissing();
  }
  // A cached verification is used synchronously; only a real one costs a promise.
  const hit = verifier.lookup(token);
  if (hit) {
    adopt(principal, hit.token, ctx, authorization!, hit, claim);
    return undefined;
  }
  return verifier.verify(token).then((v) => adopt(principal, v, ctx, authorization!, verifier.lookup(token), claim));
};

/** Takes the verified token (and its parsed scopes) for this request; remembers it on the connection when it is in the cache. */
function adopt(
  principal: Principal,
  verified: VerifiedToken,
  ctx: RequestContext,
  header: string,
  entry: TokenCacheEntry | undefined,
  patientClaim: string,
): void {
  let scopes = scopeCache.get(verified);
  if (!scopes) {
    scopes = parseScopes(verified.claims);
    scopeCache.set(verified, scopes);
  }
  const patient = verified.claims[patientClaim];
  principal.token = verified;
  principal.scopes = scopes;
  principal.patient = typeof patient === 'string' ? patient : undefined;
  if (entry?.token === verified) ctx.connection.bearer = { header, entry, scopes, patient: principal.patient };
}

export const requireScopes: Check = ({ rule, interaction, principal }) => {
  const { scopes: required } = rule.require;
  // SMART defines no scope for the CapabilityStatement, and a batch/transaction is granted entry by
  // entry (each entry passes its own rule): an inherited `smart: true` must not refuse them whole.
  const smart = rule.require.smart && !WHOLE_REQUEST_EXEMPT.has(interaction.kind);
  if (required.length === 0 && !smart) return;
  const set = principal.scopes;
  // A rule that names scopes cannot be met without a token, whatever its auth setting says.
  if (!set) throw tokenMissing();
  const missing = missingScopes(set, required);
  if (missing.length > 0) throw insufficient(missing.join(' '));
  if (smart) {
    const ctx = { patient: principal.patient, deferBinaryRead: true };
    if (!smartGrants(set, interaction, ctx)) {
      if (smartGrants(set, interaction, { ...ctx, deferCompartmentRead: true })) principal.compartmentRead = true;
      else if (termsOf(set) === 'patient') throw insufficient(describeRequired(interaction, 'patient'), PATIENT_HINT);
      else throw insufficient(describeRequired(interaction));
    }
  }
};

/** What a patient-scoped token can do about a refusal, in its own terms. */
export const PATIENT_HINT =
  "on the launch patient's own resources: read Patient/{patient} or a resource of the patient's by id, pin a search with patient= or subject=Patient/{patient}, or search Patient/{patient}/Type";

/** The scope context a refusal is worded in: the caller's own (a patient app is not told to get a user/ scope). */
export function termsOf(set: ScopeSet): 'patient' | 'user' {
  return set.smart.length > 0 && set.smart.every((s) => s.context === 'patient') ? 'patient' : 'user';
}

/** No token where a rule needs one (RFC 6750 §3.1: the challenge names no error). */
export function tokenMissing(): GatewayError {
  return new GatewayError('TOKEN_MISSING', undefined, { headers: { 'www-authenticate': NO_TOKEN_CHALLENGE } });
}

export function insufficient(scope: string, why?: string): GatewayError {
  const safe = scope.replace(/["\\]/g, '');
  return new GatewayError('INSUFFICIENT_SCOPE', `requires ${safe}${why ? ` (${why})` : ''}`, {
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="${safe}"` },
  });
}
