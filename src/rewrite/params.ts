import type { IncomingMessage } from 'node:http';
import type { InflateConfig } from '../config/types.js';
import { GatewayError } from '../errors/catalogue.js';
import type { Interaction } from '../fhir/interaction.js';
import { acceptsJson } from '../lib/accept.js';

/** A guard's decision on an answer entry: send it, drop it, or not yet known. */
export type Verdict = 'admit' | 'drop' | undefined;

/**
 * Which entries of a Bundle answer may be sent (security/answer-guard.ts decides; the rewrite
 * asks as the entry streams: its resource's type, id, and each reference under a top-level element).
 */
export interface EntryGuard {
  type(resourceType: string): Verdict;
  id(resourceType: string, id: string): Verdict;
  /** `path`: the element path of the Reference below the resource, without indexes (`participant.actor`). */
  reference(resourceType: string, path: string, reference: string): Verdict;
  /** The entry ended undecided. */
  end(resourceType: string | undefined): 'admit' | 'drop';
}

/** Which resource types the caller may read (security/read-grant.ts decides; the rewrite only asks). */
export interface ReadCheck {
  mayRead(type: string | undefined): boolean;
}

/** Every type: where the rule applies no scope model. */
export const READS_ALL: ReadCheck = { mayRead: () => true };

/** How one response is rewritten: the rule's inflate settings, lowered by the client's `_inflate`. */
export interface RewriteParams {
  readonly inflate: boolean;
  readonly maxBytes: number;
  /** Whose blobs may be inflated (src/rewrite/inflate.ts): decided by what was asked, never by what the answer says about itself. */
  readonly owners: 'root' | 'entries' | 'by-type';
  /** Stored content is inflated only into resources of types the caller may read. */
  readonly reader: ReadCheck;
  /**
   * A write's successful answer carries no body: the caller may not read the resource it wrote
   * (or the one a conditional create matched). Status, Location, ETag and Last-Modified remain,
   * which is what `Prefer: return=minimal` gives.
   */
  readonly withhold: boolean;
  /**
   * With `withhold`: not even the version headers (Location, Content-Location, ETag,
   * Last-Modified) — the writer is nobody the gateway knows (a write URL's holder).
   */
  readonly bare?: boolean;
  /** Batch/transaction answers: the entries (by index) whose `resource` is left out, for the same reason. */
  readonly withheldEntries?: ReadonlySet<number>;
  /** Entries the request is not entitled to are dropped from a Bundle answer. */
  readonly guard?: EntryGuard;
  /** Batch/transaction answers: the guard (by request entry index) of the Bundle each entry's `resource` holds. */
  readonly entryGuards?: ReadonlyMap<number, EntryGuard>;
  /** Links past the budget as signed file URLs (`signedUrls.links`): see InflateOptions.signedLink. */
  readonly signedLink?: (owner: string, blob: { readonly id: string; readonly sha256: string }) => string | undefined;
}

/** Whether the answer is held to what the request is entitled to, entry by entry. */
export function guarded(params: RewriteParams): boolean {
  return params.guard !== undefined || params.entryGuards !== undefined;
}

/** Interactions whose answer is the resource written (or matched). */
const WRITE_ANSWERS = new Set(['create', 'update', 'patch']);

function withholds(i: Interaction, reader: ReadCheck): boolean {
  const write = WRITE_ANSWERS.has(i.kind) || (i.kind === 'operation' && i.operation === 'binary-access-write');
  return write && !reader.mayRead(i.resourceType);
}

function ownersOf(i: Interaction): RewriteParams['owners'] {
  switch (i.kind) {
    case 'search':
    case 'history':
    case 'batch':
    case 'transaction':
      return 'entries';
    case 'operation':
      return 'by-type';
    default:
      return 'root';
  }
}

/** Interactions whose responses can carry resources, hence attachments. */
const CARRY_RESOURCES = new Set(['read', 'vread', 'search', 'history', 'operation', 'patch']);

/** Whether a pass-through response of this interaction goes through the rewrite engine. */
export function rewritesResponse(i: Interaction): boolean {
  return CARRY_RESOURCES.has(i.kind);
}

/**
 * The client's `_inflate` (`false`, `true`, or a number of bytes): it may ask for less inflation
 * than the rule allows, never for more. The parameter is the gateway's, so it is taken out of the
 * query before the upstream sees it (a strict server would refuse it).
 */
export function rewriteParams(
  i: Interaction,
  inflate: InflateConfig,
  reader: ReadCheck = READS_ALL,
): { readonly params: RewriteParams; readonly interaction: Interaction } {
  const policy: RewriteParams = {
    inflate: inflate.enabled,
    maxBytes: inflate.maxBytesPerResponse,
    owners: ownersOf(i),
    reader,
    withhold: reader !== READS_ALL && withholds(i, reader),
  };
  // Encoded names (%5Finflate) and ';' separators are read too: the pre-check must not skip them.
  if (!/_inflate|%|;/i.test(i.query)) return { params: policy, interaction: i };
  let asked: string | undefined;
  const kept: string[] = [];
  for (const part of i.query.split(/[&;]/)) {
    const eq = part.indexOf('=');
    if (safeDecode(eq < 0 ? part : part.slice(0, eq)) !== '_inflate') {
      kept.push(part);
      continue;
    }
    if (asked !== undefined) throw new GatewayError('BAD_REQUEST', '_inflate may be given once');
    asked = safeDecode(eq < 0 ? '' : part.slice(eq + 1));
  }
  if (asked === undefined) return { params: policy, interaction: i };
  let params = policy;
  if (asked === 'false') params = { ...policy, inflate: false };
  else if (/^\d{1,15}$/.test(asked)) params = { ...policy, maxBytes: Math.min(policy.maxBytes, Number(asked)) };
  else if (asked !== 'true') throw new GatewayError('BAD_REQUEST', '_inflate must be true, false, or a number of bytes');
  const query = kept.join('&');
  return { params, interaction: { ...i, query } };
}

/**
 * A rewritten response is FHIR JSON: what the gateway cannot read, it cannot hold to a budget.
 * A client that accepts JSON gets it (the upstream is asked for exactly that, uncompressed);
 * one that accepts only XML (by Accept or `_format`) is told so with 406.
 */
export function requireJson(req: IncomingMessage, i: Interaction): void {
  if (!acceptsJson(req.headers.accept, i.query)) {
    throw new GatewayError(
      'NOT_ACCEPTABLE',
      'responses are sent as FHIR JSON only (the gateway rewrites their attachments): accept application/fhir+json',
    );
  }
  req.headers.accept = 'application/fhir+json';
  // Assigned, not deleted (deleting keys turns the headers object into a slow dictionary); and
  // only when the client asked for an encoding: without it the upstream sends none.
  if (req.headers['accept-encoding'] !== undefined) req.headers['accept-encoding'] = 'identity';
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}
