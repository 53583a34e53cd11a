import { forEntry, GatewayError, isGatewayError } from '../errors/catalogue.js';
import type { ScannedBundle } from '../fhir/bundle-scan.js';
import { classifyEntry } from '../fhir/classify.js';
import type { Interaction } from '../fhir/interaction.js';
import { OWN_ONLY } from '../fhir/reach.js';
import type { EntryGuard } from '../rewrite/params.js';
import { answerGuard } from './answer-guard.js';
import type { CheckInput, Principal } from './checks.js';
import type { RequestContext } from './client.js';
import { PRE_BODY_CHECKS, runChecks } from './pipeline.js';
import type { EffectiveRule } from './policy.js';
import type { Settings } from './settings.js';

/**
 * Batch and transaction Bundles are authorized entry by entry: each entry is classified into its
 * own interaction and must pass the rule that interaction matches, as if sent alone. The Bundle
 * is read (spooled, never held in memory) only after the request passed what can be decided
 * without it.
 */

/** The request before its body is read: the Bundle says whether it is a batch or a transaction. */
/** Operations on content (and GraphQL, whose documents carry it) are done at their own endpoints, never inside a Bundle. */
const BUNDLE_REFUSED_OPERATIONS: ReadonlySet<string> = new Set(['binary-access-read', 'binary-access-write', 'file-url', 'graphql']);

export interface BundleRequest {
  readonly ctx: RequestContext;
  /** Classified as `batch` (the classifier never reads bodies). */
  readonly interaction: Interaction;
  readonly authorization: string | undefined;
  readonly contentLength: number | undefined;
  readonly principal: Principal;
}

/**
 * Before the body is read, the request must pass the transport/address/size/token checks of the
 * batch rule or the transaction rule (the body decides which, and is checked again against that
 * one). Resolves with the rule that passed, whose size limit bounds the read.
 */
export async function authorizeBundleRequest(r: BundleRequest, settings: Settings): Promise<EffectiveRule> {
  let first: unknown;
  for (const kind of ['batch', 'transaction'] as const) {
    const interaction = { ...r.interaction, kind };
    const rule = settings.policy.ruleFor(interaction);
    try {
      await runChecks({ ...r, interaction, rule }, settings, PRE_BODY_CHECKS);
      return rule;
    } catch (err) {
      first ??= err;
    }
  }
  throw first;
}

/**
 * The Bundle as read: its own rule (as a batch or transaction), then every entry's. Resolves with
 * the Bundle's interaction and rule; a refused entry is named in the error.
 */
export async function authorizeBundle(
  r: BundleRequest,
  scanned: ScannedBundle,
  settings: Settings,
): Promise<{
  readonly interaction: Interaction;
  readonly rule: EffectiveRule;
  readonly writes: readonly (Interaction | undefined)[];
  readonly withheld: ReadonlySet<number>;
  /** Entries (by index) whose answer is a Bundle held to what the entry is entitled to (answer-guard.ts). */
  readonly guards: ReadonlyMap<number, EntryGuard>;
}> {
  const interaction: Interaction = { ...r.interaction, kind: scanned.type };
  const rule = settings.policy.ruleFor(interaction);
  await runChecks({ ...r, interaction, rule, contentLength: scanned.size }, settings);
  const writes: (Interaction | undefined)[] = [];
  const withheld = new Set<number>();
  const guards = new Map<number, EntryGuard>();
  for (const entry of scanned.entries) {
    try {
      const ei = classifyEntry(entry.method, entry.url, entry.ifNoneExist !== undefined ? { ifNoneExist: entry.ifNoneExist } : undefined);
      // Binary content and its securityContext are the binary plane's, which a Bundle entry
      // bypasses: reading or writing Binary is done at its own endpoints.
      if (ei.resourceType === 'Binary' || entry.resourceType === 'Binary') {
        throw new GatewayError('BAD_BUNDLE', 'Binary cannot be read or written inside a Bundle: use the Binary endpoints');
      }
      if (BUNDLE_REFUSED_OPERATIONS.has(ei.operation ?? '')) {
        throw new GatewayError('BAD_BUNDLE', `$${ei.operation} cannot be used inside a Bundle`);
      }
      if (entry.resourceType !== undefined && (ei.kind === 'create' || ei.kind === 'update') && entry.resourceType !== ei.resourceType) {
        throw new GatewayError('BAD_BUNDLE', `resource is ${entry.resourceType.slice(0, 64)} but request.url names ${ei.resourceType}`);
      }
      writes[entry.index] = ei.kind === 'create' || ei.kind === 'update' || ei.kind === 'patch' ? ei : undefined;
      // Only a write's attachment data is externalized (and its blob linked to what it wrote): a
      // search or operation entry is held to the operation-body rule instead, data under minBytes.
      const minBytes = settings.config.externalize.minBytes;
      if (ei.kind !== 'create' && ei.kind !== 'update' && (entry.largestData ?? 0) >= minBytes && entry.largestData !== undefined) {
        throw new GatewayError(
          'PAYLOAD_TOO_LARGE',
          `attachment data in a ${ei.kind} entry must stay under externalize.minBytes (${minBytes} bytes): only creates and updates store content`,
        );
      }
      if (ei.kind === 'patch') {
        throw new GatewayError('BAD_BUNDLE', 'PATCH cannot be sent inside a Bundle: send it on its own, where the patch is checked');
      }
      const input: CheckInput = {
        ctx: r.ctx,
        interaction: ei,
        rule: settings.policy.ruleFor(ei),
        authorization: r.authorization,
        contentLength: undefined,
        principal: r.principal,
      };
      await runChecks(input, settings);
      // A write a rule that governs reading its type refuses: its entry's answer carries no resource.
      if (r.principal.withholdAnswer === true) {
        r.principal.withholdAnswer = false;
        withheld.add(entry.index);
      }
      // A conditional reference is a search the server runs on the entry's behalf: held to the
      // search rules of its type like any search (and what it reaches, like any criteria).
      for (const ref of entry.conditionalReferences ?? []) await authorizeConditionalReference(input, ref, settings, 'BAD_BUNDLE');
      // A listing's Bundle in the answer is held to what the entry is entitled to, as if sent alone.
      const guard = entryGuard(ei, r.principal, input.rule, settings);
      if (guard) guards.set(entry.index, guard);
      // A patient-scoped read by id is decided by asking the upstream before it is forwarded,
      // which cannot happen for one entry of a Bundle the upstream executes whole.
      if (r.principal.compartmentRead === true) {
        r.principal.compartmentRead = false;
        throw new GatewayError(
          'INSUFFICIENT_SCOPE',
          'a patient-scoped read by id is not accepted inside a Bundle: read it on its own, or search with patient=',
        );
      }
    } catch (err) {
      throw isGatewayError(err) ? forEntry(err, entry.index) : err;
    }
  }
  return { interaction, rule, writes, withheld, guards };
}

/** The answer guard of one entry, under the rules of every type it reaches (as flow.ts does for a request sent alone). */
function entryGuard(i: Interaction, principal: Principal, own: EffectiveRule, settings: Settings): EntryGuard | undefined {
  const reach = settings.policy.reachOf(i);
  const rule = reach === OWN_ONLY ? own : settings.policy.strictest(own, settings.policy.reachedRules(reach));
  return answerGuard(i, principal, rule, reach);
}

/**
 * A conditional reference (`"reference": "Patient?identifier=x"`) is a search the server runs on
 * the writer's behalf — in a transaction (R4), and in any create or update on servers that resolve
 * match URLs inline (HAPI): held to the search rules of its type, and what its criteria reach.
 */
export async function authorizeConditionalReference(
  input: CheckInput,
  ref: string,
  settings: Settings,
  malformed: 'BAD_BUNDLE' | 'BAD_REQUEST' = 'BAD_REQUEST',
): Promise<void> {
  const search = classifyEntry('GET', ref);
  if (search.kind !== 'search' || search.resourceType === undefined) {
    throw new GatewayError(malformed, 'a conditional reference must be Type?criteria');
  }
  await runChecks({ ...input, interaction: search, rule: settings.policy.ruleFor(search) }, settings);
}
