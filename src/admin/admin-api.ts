import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditRecord } from '../audit/record.js';
import { whoOf } from '../audit/record.js';
import type { PendingLookup } from '../binary/pending-lookup.js';
import { GatewayError } from '../errors/catalogue.js';
import { storeFailure } from '../errors/map.js';
import { RELATIVE_REFERENCE } from '../fhir/resource-types.js';
import type { BlobEvent } from '../lib/blob-events.js';
import { isBlobId } from '../lib/blob-id.js';
import { inRanges, parseRange, type Range } from '../lib/ip.js';
import { buildContext } from '../http/context.js';
import { appError } from '../http/health.js';
import { parseScopes } from '../security/scopes/parse.js';
import type { LiveSettings } from '../security/settings.js';
import type { BlobInfo, BlobState, BlobStore } from '../storage/blob-store.js';

export interface AdminDeps {
  readonly store: BlobStore;
  readonly upstream: PendingLookup;
  readonly settings: LiveSettings;
  audit(record: AuditRecord): void;
}

/** Where the routes live: under /_admin on the main listener or on the admin listener alike. */
export const ADMIN_PREFIX = '/_admin/';

const STATES: readonly BlobState[] = ['pending', 'linked', 'unlinked', 'quarantined'];
const MAX_LIMIT = 1000;

/** What an admin request did, for its audit record (written when the response is sent). */
interface AdminCall {
  claims?: Readonly<Record<string, unknown>>;
  /** The catalogue code of a refusal. */
  code?: string;
  change?: string;
  blobs: BlobEvent[];
  address?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    adminCall?: AdminCall;
  }
}

/**
 * The admin API (docs/operations.md, "Admin API"), seed 000's "search storage by fileId" and
 * "manual link via admin API": find a blob, list blobs by state, link one to the resource that
 * refers to it, quarantine or release one, delete one no resource refers to. Every call needs a
 * token the auth section accepts carrying `admin.scope` (and a client address in `admin.ipAllow`),
 * and every call — refused ones too — is one audit record. Links and deletes are checked with the
 * FHIR server first: a blob is never linked to a resource that does not refer to it, nor deleted
 * while one does.
 */
export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith(ADMIN_PREFIX)) return;
    const call: AdminCall = { blobs: [] };
    req.adminCall = call;
    const settings = deps.settings.current;
    const ctx = buildContext(req.raw, settings.trustedProxies, req.id);
    call.address = ctx.clientIp.toString();
    const allow = settings.config.admin.ipAllow.map((r) => parseRange(r)).filter((r): r is Range => r !== undefined);
    if (allow.length > 0 && !inRanges(ctx.clientIp, allow)) throw new GatewayError('FORBIDDEN');
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/.exec(header) : null;
    if (!m) throw new GatewayError('TOKEN_MISSING');
    const token = await settings.verifier.verify(m[1]);
    call.claims = token.claims;
    if (!parseScopes(token.claims).raw.has(settings.config.admin.scope))
      throw new GatewayError('INSUFFICIENT_SCOPE', `the admin API needs the scope ${settings.config.admin.scope}`);
  });
  app.addHook('onError', async (req, _reply, err) => {
    if (req.adminCall) req.adminCall.code = appError(err).code;
  });
  app.addHook('onResponse', async (req, reply) => {
    const call = req.adminCall;
    if (!call) return;
    const status = reply.statusCode;
    deps.audit({
      audit: 1,
      time: new Date().toISOString(),
      reqId: req.id,
      action: req.method === 'GET' ? 'read' : req.method === 'DELETE' ? 'delete' : 'update',
      outcome: status < 400 ? 'success' : status < 500 ? 'refused' : 'failed',
      status,
      ...(call.code ? { code: call.code } : {}),
      who: { ...whoOf(call.claims, undefined), system: 'admin-api' },
      what: { change: call.change ?? `${req.method} ${req.routeOptions.url ?? 'unknown'}`, blobs: call.blobs },
      ...(call.address ? { where: { address: call.address, proto: req.protocol } } : {}),
    });
  });

  const blob = async (req: FastifyRequest<{ Params: { id: string } }>): Promise<BlobInfo> => {
    const id = req.params.id;
    if (!isBlobId(id)) throw new GatewayError('NOT_FOUND', 'no such blob');
    let info: BlobInfo | undefined;
    try {
      info = await deps.store.head(id);
    } catch (err) {
      throw storeFailure(err);
    }
    if (!info) throw new GatewayError('NOT_FOUND', 'no such blob');
    return info;
  };
  /** Names the call before anything can refuse it (the audit record says what was tried). */
  const change = (req: FastifyRequest, name: string) => {
    req.adminCall!.change = name;
  };
  const note = (req: FastifyRequest, name: string, e: BlobEvent) => {
    req.adminCall!.change = name;
    req.adminCall!.blobs.push(e);
  };

  app.get<{ Params: { id: string } }>(`${ADMIN_PREFIX}blobs/:id`, async (req) => {
    change(req, 'find');
    const info = await blob(req);
    note(req, 'find', { action: 'read', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    return { blob: view(info) };
  });

  app.get<{ Querystring: { state?: string; cursor?: string; limit?: string } }>(`${ADMIN_PREFIX}blobs`, async (req) => {
    const { state, cursor } = req.query;
    change(req, `list${state ? ` ${state}` : ''}`);
    if (state !== undefined && !STATES.includes(state as BlobState))
      throw new GatewayError('BAD_REQUEST', `state must be one of ${STATES.join(', ')}`);
    // A cursor is what an earlier page returned: an id, or a store's opaque continuation token.
    if (cursor !== undefined && !/^[A-Za-z0-9+/=._-]{1,4096}$/.test(cursor)) throw new GatewayError('BAD_REQUEST', 'not a cursor');
    const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
      throw new GatewayError('BAD_REQUEST', `limit must be 1 to ${MAX_LIMIT}`);
    let page;
    try {
      page = await deps.store.list({ limit, ...(cursor ? { cursor } : {}) });
    } catch (err) {
      throw storeFailure(err);
    }
    // The store lists in its own order: a page filtered by state may be short, even empty, with a cursor.
    return {
      items: page.items.filter((i) => state === undefined || i.state === state).map(view),
      ...(page.cursor ? { cursor: page.cursor } : {}),
      ...(page.unreadable?.length ? { unreadable: page.unreadable } : {}),
    };
  });

  app.post<{ Params: { id: string }; Body: unknown }>(`${ADMIN_PREFIX}blobs/:id/link`, async (req) => {
    change(req, 'link');
    const info = await blob(req);
    const resource = (req.body as { resource?: unknown } | undefined)?.resource;
    if (typeof resource !== 'string' || !RELATIVE_REFERENCE.test(resource))
      throw new GatewayError('BAD_REQUEST', 'the body must be {"resource": "Type/id"}');
    note(req, 'link', { action: 'link', blob: info.id, resource });
    if (info.state === 'quarantined') throw new GatewayError('LINK_UNVERIFIED', 'the blob is quarantined: release it first');
    const current = await ask(() => deps.upstream.currentReference(resource, info.id));
    if (!current.referenced) throw new GatewayError('LINK_UNVERIFIED', `the current version of ${resource} does not refer to this blob`);
    return { blob: view(await deps.store.setMeta(info.id, { state: 'linked', owner: resource, retention: null })) };
  });

  app.post<{ Params: { id: string } }>(`${ADMIN_PREFIX}blobs/:id/quarantine`, async (req) => {
    change(req, 'quarantine');
    const info = await blob(req);
    note(req, 'quarantine', { action: 'link', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    return { blob: view(await deps.store.setMeta(info.id, { state: 'quarantined' })) };
  });

  app.post<{ Params: { id: string } }>(`${ADMIN_PREFIX}blobs/:id/release`, async (req) => {
    change(req, 'release');
    const info = await blob(req);
    note(req, 'release', { action: 'link', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    if (info.state !== 'quarantined') throw new GatewayError('BAD_REQUEST', 'the blob is not quarantined');
    // Back to what it was: linked to its owner (the sweeper re-checks that it is still referred
    // to), or pending (reconciled like any other).
    return { blob: view(await deps.store.setMeta(info.id, { state: info.owner ? 'linked' : 'pending' })) };
  });

  app.delete<{ Params: { id: string } }>(`${ADMIN_PREFIX}blobs/:id`, async (req, reply) => {
    change(req, 'delete');
    const info = await blob(req);
    note(req, 'delete', { action: 'delete', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    const owner = info.owner
      ? (await ask(() => deps.upstream.currentReference(info.owner!, info.id))).referenced
        ? info.owner
        : undefined
      : info.intent
        ? await ask(() => deps.upstream.findReference(info.intent!, info.id, new Date(info.createdAt)))
        : undefined;
    if (owner) throw new GatewayError('BLOB_IN_USE', `${owner} refers to this blob: change or delete it there first`);
    await deps.store.delete(info.id);
    return reply.code(204).send();
  });
}

/** The FHIR server asked on the admin's behalf; no verdict is no change. */
async function ask<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new GatewayError('UPSTREAM_UNAVAILABLE', `the FHIR server could not be asked (${(err as Error).message.slice(0, 120)})`);
  }
}

/** A blob as the admin API shows it: its record, without the per-chunk digests. */
function view(info: BlobInfo): Record<string, unknown> {
  const { chunks: _chunks, ...rest } = info;
  return { ...rest, owner: info.owner ?? null };
}
