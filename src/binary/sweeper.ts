import type { AuditRecord } from '../audit/record.js';
import type { BlobEvent } from '../lib/blob-events.js';
import type { GatewayConfig } from '../config/types.js';
import { staleFiles } from '../lib/dir-names.js';
import { isBlobId } from '../lib/blob-id.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import type { PendingLookup } from './pending-lookup.js';

/**
 * The retention sweeper (`fhir-binary-gateway sweep`, docs/operations.md). One sweep at a time
 * across every replica sharing the store: each period (`retention.sweepPeriodMinutes`) has one
 * claim, made through the store's own exclusive create; a sweep that cannot make it does nothing,
 * and one that can stops at its period's end, recording where (a claim `sweep-resume-{period}`
 * whose note is the blob id): the next sweep goes on from there and round to it, so blobs kept
 * for "no verdict" cannot hold back those after them. It removes crash leftovers past the
 * temporary class, and reconciles blobs left `pending` past their grace with the upstream: linked
 * when a resource there refers to them, deleted when none does — never deleted while the upstream
 * cannot be asked. Linked blobs are checked against their resource's current version (at most
 * every recheckHours): one no longer referred to becomes `unlinked`, kept for its retention class,
 * and deleted after it only if still no current version refers to it. Quarantined blobs are left
 * to the operator.
 */

export interface SweepOptions {
  readonly store: BlobStore;
  readonly upstream: PendingLookup;
  /** The gateway's spool directory (server.spoolDir): bodies it was checking when it crashed. */
  readonly spoolDir: string;
  readonly retention: GatewayConfig['retention'];
  /** Report what would be done; change nothing (no claim is made either). */
  readonly dryRun: boolean;
  /** Who sweeps (host and pid), written in the claim. */
  readonly holder: string;
  /** Stops the sweep between blobs (the gateway shutting down). */
  readonly signal?: AbortSignal;
  /** Every change (link, unlink, delete) as an audit record (not in a dry run). */
  audit?(record: AuditRecord): void;
  now?(): Date;
}

export interface SweepReport {
  /** The period's claim: made (or not needed, dry run), or held by another sweep (nothing done). */
  readonly claim: string;
  claimed: boolean;
  dryRun: boolean;
  /** Store temp files and spool files past the temporary class. */
  leftovers: string[];
  spool: string[];
  /** Claims of earlier periods their holders left behind. */
  staleClaims: string[];
  linked: { id: string; owner: string }[];
  /** Linked blobs their resource no longer refers to: kept until their class ends. */
  unlinked: { id: string; owner: string; retention: string; until: string }[];
  /** Linked blobs checked and still referred to. */
  checked: number;
  deleted: string[];
  kept: { id: string; why: string }[];
  /** Stopped at the period's end: the next sweep goes on from the blob it stopped at. */
  stoppedEarly: boolean;
  /** Where this sweep began (the blob an earlier one stopped at; it wraps round to it), or null from the first blob. */
  resumedAt: string | null;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Spool files the gateway names (lib/spool-file.ts and friends): `fbg-{kind}-{uuid}…`. */
const SPOOL_FILE = /^fbg-[a-z]+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
/** Margin before the period's end: the next period's sweep may start then. */
const DEADLINE_MARGIN_MS = 30_000;

export async function sweep(opts: SweepOptions): Promise<SweepReport> {
  const now = opts.now ?? (() => new Date());
  const period = opts.retention.sweepPeriodMinutes * 60_000;
  const index = Math.floor(now().getTime() / period);
  const claim = `sweep-${index}`;
  const report: SweepReport = {
    claim,
    claimed: false,
    dryRun: opts.dryRun,
    leftovers: [],
    spool: [],
    staleClaims: [],
    linked: [],
    unlinked: [],
    checked: 0,
    deleted: [],
    kept: [],
    stoppedEarly: false,
    resumedAt: null,
  };
  report.claimed = opts.dryRun || (await opts.store.claim(claim, opts.holder));
  if (!report.claimed) return report;
  const deadline = (index + 1) * period - Math.min(DEADLINE_MARGIN_MS, period / 10);
  const late = () => now().getTime() >= deadline || opts.signal?.aborted === true;
  try {
    for (const c of await opts.store.claims()) {
      const n = /^sweep-(\d+)$/.exec(c.name);
      if (!n || Number(n[1]) >= index - 1) continue;
      report.staleClaims.push(c.name);
      if (!opts.dryRun) await opts.store.unclaim(c.name);
    }
    const from = await resumePoint(opts.store, index);
    report.resumedAt = from ?? null;
    const temporary = new Date(now().getTime() - opts.retention.temporaryHours * HOUR);
    report.leftovers.push(...((await opts.store.leftovers?.(temporary, opts.dryRun)) ?? []));
    report.spool.push(...(await staleFiles(opts.spoolDir, (n) => SPOOL_FILE.test(n), temporary, opts.dryRun)));
    const grace = now().getTime() - opts.retention.pendingGraceHours * HOUR;
    const visit = async (info: BlobInfo): Promise<boolean> => {
      const act = due(info, grace, now(), opts.retention);
      if (!act) return true;
      if (late()) return false;
      try {
        await act(opts, info, report, now());
      } catch (err) {
        // One blob the store cannot change (deleted meanwhile, a failing record) does not stop the rest.
        report.kept.push({ id: info.id, why: `the store refused the change (${(err as Error).message.slice(0, 120)})` });
      }
      return true;
    };
    // From where the last sweep stopped to the end, then round from the first blob to there: blobs
    // kept for "no verdict" (asked again at full cost) cannot hold back those after them for ever.
    const stoppedAt =
      (await walk(opts.store, from, undefined, visit, late)) ?? (from ? await walk(opts.store, undefined, from, visit, late) : undefined);
    report.stoppedEarly = stoppedAt !== undefined;
    if (!opts.dryRun) await remember(opts.store, index, opts.holder, stoppedAt);
    return report;
  } finally {
    if (!opts.dryRun) await opts.store.unclaim(claim).catch(() => undefined);
  }
}

/** The record of where a period's sweep stopped: a claim (the store's own exclusive create) with the blob id as its note. */
const RESUME = /^sweep-resume-(\d+)$/;

/** Where the newest earlier sweep that stopped early stopped, if one did. */
export async function resumePoint(store: BlobStore, index: number): Promise<string | undefined> {
  let newest = -1;
  let from: string | undefined;
  for (const c of await store.claims()) {
    const n = RESUME.exec(c.name);
    if (!n || Number(n[1]) >= index || Number(n[1]) <= newest || c.note === undefined || !isBlobId(c.note)) continue;
    newest = Number(n[1]);
    from = c.note;
  }
  return from;
}

/**
 * Records where the sweep of period `index` stopped (none: it went round every blob), and drops
 * the records of earlier periods. One sweep holds a period, so its record is made once.
 */
export async function remember(store: BlobStore, index: number, holder: string, stoppedAt: string | undefined): Promise<void> {
  if (stoppedAt !== undefined) await store.claim(`sweep-resume-${index}`, holder, stoppedAt);
  for (const c of await store.claims()) {
    const n = RESUME.exec(c.name);
    if (n && Number(n[1]) < index) await store.unclaim(c.name);
  }
}

/**
 * The store's blobs in id order from `from` (inclusive) up to `until` (exclusive), each given to
 * `visit` until it answers false: then the id it stopped at; undefined once all were visited.
 * The listing starts at `from` (the store's own `from` option, not a walk from the first blob),
 * and the deadline is looked at on every page, not only at blobs due for work: a store whose
 * blobs are mostly not due still costs a sweep its listing, and a sweep that spent its period
 * listing stops where it got to, so the next one goes on from there (attack
 * sweep-resume-relists-prefix).
 */
export async function walk(
  store: BlobStore,
  from: string | undefined,
  until: string | undefined,
  visit: (info: BlobInfo) => Promise<boolean>,
  late: () => boolean,
): Promise<string | undefined> {
  let cursor: string | undefined;
  do {
    const page = await store.list({ ...(from !== undefined ? { from } : {}), ...(cursor ? { cursor } : {}) });
    const first = page.items[0];
    if (late()) {
      // Out of time after this listing: the next sweep goes on at the first blob not visited (or,
      // on a page of names before `from` a store lists without records, where this one began).
      if (first) return until !== undefined && first.id >= until ? undefined : first.id;
      if (page.cursor && from !== undefined) return from;
    }
    for (const info of page.items) {
      if (info.id < (from ?? '')) continue;
      if (until !== undefined && info.id >= until) return undefined;
      if (!(await visit(info))) return info.id;
    }
    cursor = page.cursor;
  } while (cursor);
  return undefined;
}

type Action = (opts: SweepOptions, info: BlobInfo, report: SweepReport, now: Date) => Promise<void>;

/** What this sweep does with a blob, if anything. */
function due(info: BlobInfo, grace: number, now: Date, retention: SweepOptions['retention']): Action | undefined {
  switch (info.state) {
    case 'pending':
      return Date.parse(info.createdAt) <= grace ? reconcile : undefined;
    case 'linked':
      return info.owner && Date.parse(info.updatedAt) <= now.getTime() - retention.recheckHours * HOUR ? recheck : undefined;
    case 'unlinked':
      return info.owner && info.retainUntil && Date.parse(info.retainUntil) <= now.getTime() ? expire : undefined;
    default:
      return undefined;
  }
}

/**
 * A linked blob: still referred to by its resource's current version (then its record is touched,
 * so the next check is recheckHours away), or unlinked and given its class.
 */
async function recheck(opts: SweepOptions, info: BlobInfo, report: SweepReport, now: Date): Promise<void> {
  const owner = info.owner!;
  const current = await askCurrent(opts, info, owner, report);
  if (!current) return;
  if (current.referenced) {
    report.checked++;
    if (!opts.dryRun) await opts.store.setMeta(info.id, {});
    return;
  }
  const cls = retentionClass(opts.retention, info, owner.split('/')[0], current.categories);
  const until = new Date(Math.max(Date.parse(info.createdAt) + cls.keepDays * DAY, now.getTime() + opts.retention.unlinkedDays * DAY));
  report.unlinked.push({ id: info.id, owner, retention: cls.name, until: until.toISOString() });
  if (opts.dryRun) return;
  await opts.store.setMeta(info.id, { state: 'unlinked', retention: { name: cls.name, until: until.toISOString() } });
  audited(opts, 'unlink', 'update', 'unlink', info.id, owner);
}

/** An unlinked blob past its class: deleted, unless a current version refers to it again. */
async function expire(opts: SweepOptions, info: BlobInfo, report: SweepReport): Promise<void> {
  const owner = info.owner!;
  const current = await askCurrent(opts, info, owner, report);
  if (!current) return;
  if (current.referenced) {
    report.linked.push({ id: info.id, owner });
    if (opts.dryRun) return;
    await opts.store.setMeta(info.id, { state: 'linked', retention: null });
    audited(opts, 'relink', 'update', 'link', info.id, owner);
    return;
  }
  report.deleted.push(info.id);
  if (opts.dryRun) return;
  await opts.store.delete(info.id);
  audited(opts, 'expire', 'delete', 'delete', info.id, owner);
}

/**
 * What the owner's current version says of the blob — undefined (and the blob kept, with why)
 * when the upstream gives no verdict, or when the blob changed while it was asked.
 */
async function askCurrent(
  opts: SweepOptions,
  info: BlobInfo,
  owner: string,
  report: SweepReport,
): Promise<{ readonly referenced: boolean; readonly categories: readonly string[] } | undefined> {
  let current;
  try {
    current = await opts.upstream.currentReference(owner, info);
  } catch (err) {
    report.kept.push({ id: info.id, why: `the upstream could not be asked (${(err as Error).message.slice(0, 120)})` });
    return undefined;
  }
  return (await unchanged(opts, info, report)) ? current : undefined;
}

/**
 * Whether the blob is still as listed, just before the sweep changes it: the upstream was asked
 * meanwhile, and an admin may have quarantined, linked or deleted it, or a write linked it. A
 * changed blob is left for the next sweep, never overwritten.
 */
async function unchanged(opts: SweepOptions, info: BlobInfo, report: SweepReport): Promise<boolean> {
  if (opts.dryRun) return true;
  const now = await opts.store.head(info.id);
  if (now && now.state === info.state && now.updatedAt === info.updatedAt) return true;
  report.kept.push({ id: info.id, why: 'changed while the sweep asked the upstream: left for the next sweep' });
  return false;
}

/** A change the sweeper made, for the audit trail: the gateway acting on its own. */
function audited(
  opts: SweepOptions,
  change: string,
  action: 'update' | 'delete',
  event: BlobEvent['action'],
  blob: string,
  resource?: string,
): void {
  opts.audit?.({
    audit: 1,
    time: new Date().toISOString(),
    action,
    outcome: 'success',
    who: { system: 'sweeper' },
    what: { change, blobs: [{ action: event, blob, ...(resource ? { resource } : {}) }] },
  });
}

/**
 * The longest class that matches the blob (its owner's type, a category it was filed under, the
 * upload's purpose) — the most protective, whatever order the classes are listed in; else `unlinked`.
 */
export function retentionClass(
  retention: SweepOptions['retention'],
  info: Pick<BlobInfo, 'purpose'>,
  ownerType: string,
  categories: readonly string[],
): { name: string; keepDays: number } {
  let best: { name: string; keepDays: number } = { name: 'unlinked', keepDays: 0 };
  for (const c of retention.classes) {
    if (c.resourceTypes && !c.resourceTypes.includes(ownerType)) continue;
    if (c.categories && !c.categories.some((k) => categories.includes(k))) continue;
    if (c.purposes && !(info.purpose && c.purposes.includes(info.purpose))) continue;
    if (c.keepDays > best.keepDays) best = { name: c.name, keepDays: c.keepDays };
  }
  return best;
}

/** A blob left pending: what the upstream says decides it. */
async function reconcile(opts: SweepOptions, info: BlobInfo, report: SweepReport, now: Date): Promise<void> {
  // An upload being bound right now (GraphQL createDocumentReference holds its claim): the FHIR
  // server may not show it yet; the next sweep decides.
  if (info.upload && (await opts.store.claims()).some((c) => c.name === `bind-${info.id}`)) {
    report.kept.push({ id: info.id, why: 'an upload being bound to a resource' });
    return;
  }
  if (!info.intent && info.upload) {
    // A file uploaded on its own (GraphQL uploadFile) and never bound to a resource: the seed's
    // temporary uploads, kept `retention.temporaryHours`. Binding records an intent first, so an
    // upload the upstream may hold goes through the reconciliation below instead.
    if (Date.parse(info.createdAt) > now.getTime() - opts.retention.temporaryHours * HOUR) {
      report.kept.push({ id: info.id, why: 'an upload not bound to a resource yet (kept retention.temporaryHours)' });
      return;
    }
    if (!(await unchanged(opts, info, report))) return;
    report.deleted.push(info.id);
    if (opts.dryRun) return;
    await opts.store.delete(info.id);
    audited(opts, 'upload-expire', 'delete', 'delete', info.id);
    return;
  }
  if (!info.intent) {
    report.kept.push({ id: info.id, why: 'no record of what it was written for: nothing to ask the upstream about' });
    return;
  }
  let owner: string | undefined;
  try {
    owner = await opts.upstream.findReference(info.intent, info, new Date(info.createdAt));
  } catch (err) {
    // The upstream could not be asked: the blob may be referenced there, so it stays.
    report.kept.push({ id: info.id, why: `the upstream could not be asked (${(err as Error).message.slice(0, 120)})` });
    return;
  }
  if (!(await unchanged(opts, info, report))) return;
  if (owner) {
    report.linked.push({ id: info.id, owner });
    if (opts.dryRun) return;
    await opts.store.setMeta(info.id, { state: 'linked', owner });
    audited(opts, 'reconcile-link', 'update', 'link', info.id, owner);
    return;
  }
  report.deleted.push(info.id);
  if (opts.dryRun) return;
  await opts.store.delete(info.id);
  audited(opts, 'reconcile-delete', 'delete', 'delete', info.id);
}
