import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { refersTo, type BlobRef } from '../fhir/blob-reference.js';
import { readJson } from '../upstream/client.js';

/** What the sweeper asks the upstream about a blob left pending (binary/sweeper.ts). */
export interface PendingLookup {
  /**
   * The resource (`Type/id`) that refers to blob `blob`, given what it was written for
   * (`intent`: `Type/id` or `Type`) and when; undefined when none does. Rejects when the upstream
   * cannot answer — then nobody knows, and the blob must stay.
   */
  findReference(intent: string, blob: BlobRef, writtenAt: Date): Promise<string | undefined>;
  /**
   * Whether the current version of `owner` (`Type/id`) refers to blob `blob` (false when the
   * resource is gone), and the `category` codings (`system|code`) of its latest version, for the
   * blob's retention class. Rejects when the upstream cannot answer.
   */
  currentReference(owner: string, blob: BlobRef): Promise<{ readonly referenced: boolean; readonly categories: readonly string[] }>;
}

export interface HttpPendingLookupOptions {
  /** upstream.url: the FHIR base. */
  readonly base: string;
  /** upstream.aliases: other bases the upstream calls itself by; `next` links on them are read on `base`. */
  readonly aliases?: readonly string[];
  readonly timeoutMs: number;
  readonly rejectUnauthorized: boolean;
}

/** A search page of externalized resources is small; one past this is refused rather than held. */
const MAX_PAGE_BYTES = 16 * 1024 * 1024;
/** Pages followed per search: a write window holds few resources of one type; past this, no verdict. */
const MAX_PAGES = 50;
/** The `_count` every scan asks for. */
const PAGE_SIZE = 50;
/** How far before the blob's write the resource's lastUpdated may be (clock skew between gateway and upstream). */
const SKEW_MS = 10 * 60_000;

type Page = {
  resourceType?: unknown;
  type?: unknown;
  total?: unknown;
  entry?: { resource?: { resourceType?: unknown; id?: unknown }; search?: { mode?: unknown }; request?: { method?: unknown } }[];
  link?: { relation?: unknown; url?: unknown }[];
};

/** What a scan asks for: a search (a `searchset` Bundle) or a history (a `history` Bundle). */
export type ScanKind = 'searchset' | 'history';

/**
 * Over plain HTTP(S) to upstream.url, as the gateway itself (no client's token: the sweeper acts
 * for no one): an update's target is read; a create's type is searched by `_lastUpdated` from the
 * blob's write on, following `next` links on the upstream's own base (or an alias of it) only.
 * Every page of a scan must be a Bundle of the kind asked for: anything else is no verdict.
 */
export class HttpPendingLookup implements PendingLookup {
  private readonly base: string;
  private readonly aliases: readonly string[];

  constructor(private readonly opts: HttpPendingLookupOptions) {
    this.base = opts.base.replace(/\/+$/, '');
    this.aliases = (opts.aliases ?? []).map((a) => a.replace(/\/+$/, ''));
  }

  async findReference(intent: string, blob: BlobRef, writtenAt: Date): Promise<string | undefined> {
    // Every version counts: one that is no longer current still reads its content (vread).
    if (intent.includes('/')) return (await this.inHistory(intent, blob)) ? intent : undefined;
    // A create: the resources of its type changed since the write. A server may ignore or not
    // support `_lastUpdated` on a type (and answer "none"), so "none" is believed only from a
    // complete scan of the type; too many resources to scan is no verdict.
    const since = new Date(writtenAt.getTime() - SKEW_MS).toISOString();
    const windowed = await this.scan(
      `${this.base}/${intent}?_lastUpdated=ge${encodeURIComponent(since)}&_count=50`,
      intent,
      blob,
      'searchset',
    );
    if (windowed.found) return windowed.found;
    // The full scan holds every resource the windowed one does: it cannot be read whole either,
    // and would only cost as much again to say so.
    if (!windowed.complete) throw new Error(`no verdict: the ${intent} changed since the write could not be scanned whole`);
    const all = await this.scan(`${this.base}/${intent}?_count=50`, intent, blob, 'searchset');
    if (all.found) return all.found;
    if (!all.complete) throw new Error(`no verdict: ${intent} could not be scanned whole`);
    for (const candidate of new Set([...windowed.updated, ...all.updated])) if (await this.inHistory(candidate, blob)) return candidate;
    // A resource created with it and deleted since is in no search, but a server that keeps
    // history (HAPI) still has the version that refers to it: that one counts too. A server that
    // keeps none answers 404 (or 410): nothing more to find. Any other failure, an answer that is
    // not a history Bundle, or a history not read whole is no verdict.
    const gone = await this.scan(
      `${this.base}/${intent}/_history?_since=${encodeURIComponent(since)}&_count=50`,
      intent,
      blob,
      'history',
      'missing-is-unknown',
    );
    if (gone.found) return gone.found;
    if (gone.missing) return undefined;
    if (!gone.complete) throw new Error(`no verdict: the history of ${intent} since the write could not be read whole`);
    return undefined;
  }

  async currentReference(owner: string, blob: BlobRef): Promise<{ referenced: boolean; categories: string[] }> {
    const res = await this.get(`${this.base}/${owner}`);
    if (res.statusCode === 404 || res.statusCode === 410) {
      res.resume();
      // Gone (410), or a 404 whose history ends in a delete: unreferenced, its class from the
      // last version it had. A bare 404 proves nothing (a wrong base, a layer hiding resources):
      // no verdict, and the blob stays as it is.
      const last = await this.lastVersion(owner);
      if (res.statusCode === 410 || last.deleted || (await this.searchFindsNone(owner)))
        return { referenced: false, categories: await this.referringCategories(owner, blob, last.categories) };
      throw new Error(`no verdict: 404 for ${owner}, but the upstream will not say it is gone`);
    }
    const r = (await this.json(res)) as Record<string, unknown>;
    // Only the resource asked for answers for itself (`Binary/.` normalized to a search would not).
    const [type, id] = owner.split('/');
    if (r['resourceType'] !== type || r['id'] !== id) throw new Error(`no verdict: the upstream answered ${owner} with something else`);
    if (refersTo(r, blob)) return { referenced: true, categories: categoriesOf(r) };
    return { referenced: false, categories: await this.referringCategories(owner, blob, categoriesOf(r)) };
  }

  /**
   * The categories of the versions that referred to the blob — its class is what it was filed as,
   * not what the resource became — or, when no such version can be read (no history), `fallback`'s
   * (the last version's). The sweeper gives the longest class any of them earns.
   */
  private async referringCategories(owner: string, blob: BlobRef, fallback: string[]): Promise<string[]> {
    const out = new Set<string>();
    let seen = false;
    let url: string | undefined = `${this.base}/${owner}/_history?_count=50`;
    let read = 0;
    for (let n = 0; n < MAX_PAGES; n++) {
      const res = await this.get(url);
      if (n === 0 && (res.statusCode === 404 || res.statusCode === 410)) {
        // No history to read (a server that drops it with the resource): the fallback's class.
        res.resume();
        return fallback;
      }
      // Any other answer than a history Bundle (an error, an OperationOutcome answered 200) is no verdict.
      const page = bundlePage(await this.json(res), 'history');
      for (const e of page.entry ?? []) {
        read++;
        if (!e.resource || !refersTo(e.resource, blob)) continue;
        seen = true;
        for (const c of categoriesOf(e.resource)) out.add(c);
      }
      const next = nextLink(page);
      if (next === undefined) {
        if (typeof page.total === 'number' && page.total > read)
          throw new Error(`no verdict: the history of ${owner} says ${page.total} versions, ${read} were given`);
        return seen ? [...out] : fallback;
      }
      url = followableNext(next, this.base, this.aliases);
      // A page that cannot be read (not on the upstream's base): what it holds is unknown, and a
      // class from the pages read could be shorter than the one it earns.
      if (url === undefined) throw new Error(`no verdict: the history of ${owner} pages on a base the sweeper does not follow`);
    }
    // More history than read: what it was filed as may be further on, and a guess could shorten its class.
    throw new Error(`no verdict: the history of ${owner} is longer than ${MAX_PAGES} pages`);
  }

  /**
   * A 404 confirmed by the type's own search: `Type?_id=id` answered 200 with no match says the
   * base and type are right and the resource is not there (servers that answer a deleted
   * resource 404 rather than 410, and drop its history, as Medplum does).
   */
  private async searchFindsNone(owner: string): Promise<boolean> {
    const [type, id] = owner.split('/');
    const res = await this.get(`${this.base}/${type}?_id=${encodeURIComponent(id)}`);
    if (res.statusCode !== 200) {
      res.resume();
      return false;
    }
    const page = (await readJson(res, MAX_PAGE_BYTES)) as Page;
    return page.resourceType === 'Bundle' && page.type === 'searchset' && (page.entry ?? []).length === 0;
  }

  /** The newest history entry: whether it is a delete, and the categories of the newest version with a body. */
  private async lastVersion(owner: string): Promise<{ deleted: boolean; categories: string[] }> {
    const res = await this.get(`${this.base}/${owner}/_history?_count=10`);
    if (res.statusCode === 404 || res.statusCode === 410) {
      res.resume();
      return { deleted: false, categories: [] };
    }
    const page = bundlePage(await this.json(res), 'history');
    const newest = page.entry?.[0];
    const deleted = newest !== undefined && (newest.request?.method === 'DELETE' || newest.resource === undefined);
    const last = page.entry?.find((e) => e.resource)?.resource;
    return { deleted, categories: last ? categoriesOf(last) : [] };
  }

  /**
   * Whether any version of `resource` (`Type/id`) refers to the blob. The current version is asked
   * first (a server without history, or a layer that does not route `_history`, answers 404 there);
   * a history that cannot be read is a verdict only for a resource confirmed gone.
   */
  private async inHistory(resource: string, blob: BlobRef): Promise<boolean> {
    const [type] = resource.split('/');
    const current = await this.currentReference(resource, blob);
    if (current.referenced) return true;
    const r = await this.scan(`${this.base}/${resource}/_history?_count=50`, type, blob, 'history', 'missing-is-unknown');
    if (r.found) return true;
    if (r.missing) {
      // No history to read: believed only when the resource itself is gone (currentReference
      // resolved, so it either exists without the reference, or is confirmed deleted).
      return false;
    }
    if (!r.complete) throw new Error(`no verdict: the history of ${resource} could not be read whole`);
    return false;
  }

  /**
   * Reads a Bundle of `kind` and its `next` pages (on the upstream's base or an alias, read on
   * the base) for a resource of `type` that refers to the blob. `updated`: those changed since
   * their first version (an earlier one may refer to it). A first answer 404/410 is `missing`
   * with 'missing-is-unknown' (the caller decides), else an error; a page that is not a Bundle
   * of `kind` is an error (no verdict). `complete` only when every page was read.
   */
  private async scan(
    first: string,
    type: string,
    blob: BlobRef,
    kind: ScanKind,
    onMissing: 'missing-is-unknown' | 'missing-is-error' = 'missing-is-error',
  ): Promise<{ found?: string; complete: boolean; missing?: boolean; updated: string[] }> {
    const updated: string[] = [];
    let url = first;
    let read = 0;
    for (let n = 0; n < MAX_PAGES; n++) {
      const res = await this.get(url);
      // A search or history the server does not answer proves nothing: no verdict (or, for a
      // history, the caller decides with what else it knows).
      if (n === 0 && (res.statusCode === 404 || res.statusCode === 410) && onMissing === 'missing-is-unknown') {
        res.resume();
        return { complete: false, missing: true, updated };
      }
      const page = bundlePage(await this.json(res), kind);
      const entries = page.entry ?? [];
      for (const e of entries) {
        if (kind === 'history' || e.search?.mode === undefined || e.search.mode === 'match') read++;
        const r = e.resource as (Record<string, unknown> & { meta?: { versionId?: unknown } }) | undefined;
        if (!r || typeof r.id !== 'string' || r.resourceType !== type) continue;
        if (refersTo(r, blob)) return { found: `${type}/${r.id}`, complete: true, updated };
        if (r.meta?.versionId !== '1') updated.push(`${type}/${r.id}`);
      }
      const next = nextLink(page);
      if (next === undefined) {
        // "None" is believed only from a scan that saw everything: a Bundle whose total is more
        // than was given, or a full page with no next link (a server that caps results without
        // paging) unless its total says that was all, leaves it incomplete.
        const total = typeof page.total === 'number' ? page.total : undefined;
        const complete = !(total !== undefined && total > read) && !(entries.length >= PAGE_SIZE && total !== read);
        return { complete, updated };
      }
      const follow = followableNext(next, this.base, this.aliases);
      // A next page it cannot follow (not on the upstream's base nor an alias) leaves it incomplete.
      if (follow === undefined) return { complete: false, updated };
      url = follow;
    }
    return { complete: false, updated };
  }

  private async json(res: IncomingMessage): Promise<unknown> {
    if (res.statusCode !== 200) {
      res.resume();
      throw new Error(`the upstream answered ${res.statusCode ?? 'nothing'}`);
    }
    return readJson(res, MAX_PAGE_BYTES);
  }

  private get(url: string): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const target = new URL(url);
      const req = (target.protocol === 'https:' ? https : http).get(target, {
        headers: { accept: 'application/fhir+json' },
        ...(target.protocol === 'https:' ? { rejectUnauthorized: this.opts.rejectUnauthorized } : {}),
      });
      req.setTimeout(this.opts.timeoutMs, () => req.destroy(new Error('the upstream did not answer in time')));
      req.once('response', resolve);
      req.once('error', reject);
    });
  }
}

/** `system|code` and `code` of every coding of a resource's `category` (one CodeableConcept or a list). */
export function categoriesOf(resource: Record<string, unknown>): string[] {
  const c = resource.category;
  const concepts = (Array.isArray(c) ? c : c ? [c] : []) as { coding?: unknown }[];
  const out: string[] = [];
  for (const concept of concepts) {
    if (typeof concept !== 'object' || concept === null || !Array.isArray(concept.coding)) continue;
    for (const coding of concept.coding as { system?: unknown; code?: unknown }[]) {
      if (typeof coding?.code !== 'string') continue;
      out.push(coding.code);
      if (typeof coding.system === 'string') out.push(`${coding.system}|${coding.code}`);
    }
  }
  return out;
}

/**
 * The body of a scan's page as a Bundle of `kind`; anything else — an OperationOutcome answered
 * 200 (HAPI's ConsentInterceptor refuses so), a resource, a Bundle of another type — throws:
 * it has no entries and no next link, and read as a page it would be "complete, none".
 */
export function bundlePage(body: unknown, kind: ScanKind): Page {
  const page = body as Page | null;
  if (typeof page !== 'object' || page === null || Array.isArray(page) || page.resourceType !== 'Bundle' || page.type !== kind) {
    const what =
      typeof page === 'object' && page !== null && typeof page.resourceType === 'string' ? page.resourceType.slice(0, 40) : typeof body;
    throw new Error(
      `no verdict: the upstream answered a ${kind} with ${what === 'Bundle' ? `a Bundle of type ${String(page?.type).slice(0, 40)}` : what}`,
    );
  }
  if (page.entry !== undefined && !Array.isArray(page.entry)) throw new Error(`no verdict: a ${kind} Bundle whose entry is not a list`);
  return page;
}

/** The raw `next` link of a page, if it has one (a non-string one is returned as is: not followable). */
function nextLink(page: Page): unknown {
  return Array.isArray(page.link) ? page.link.find((l) => l?.relation === 'next')?.url : undefined;
}

/**
 * The URL to read a `next` link at: one on the upstream's base — under it (`${base}/…`) or on it
 * (`${base}?…`, HAPI's `_getpages`) — or the same on an alias (the upstream naming itself by
 * another base), moved to `base`; undefined for anything else, and for a link that leaves the
 * base once its path is resolved (`${base}/../…`).
 */
export function followableNext(link: unknown, base: string, aliases: readonly string[] = []): string | undefined {
  if (typeof link !== 'string') return undefined;
  for (const b of [base, ...aliases]) {
    if (!link.startsWith(b)) continue;
    const rest = link.slice(b.length);
    if (rest[0] !== '/' && rest[0] !== '?') continue;
    if (!URL.canParse(base + rest)) return undefined;
    const target = new URL(base + rest);
    const home = new URL(base);
    const path = home.pathname.replace(/\/+$/, '');
    if (target.origin !== home.origin || (target.pathname !== path && !target.pathname.startsWith(`${path}/`))) return undefined;
    return target.href;
  }
  return undefined;
}
