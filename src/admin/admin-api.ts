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
import { insufficient, tokenMissing } from '../security/checks.js';
import { bearerToken } from '../security/jwt.js';
import { parseScopes } from '../security/scopes/parse.js';
import type { LiveSettings } from '../security/settings.js';
import type { BlobInfo, BlobState, BlobStore, MetaPatch } from '../storage/blob-store.js';

export interface AdminDeps {
  readonly store: BlobStore;
  readonly upstream: PendingLookup;
  readonly settings: LiveSettings;
  audit(record: AuditRecord): void;
}

/** Where the routes live: under /_admin on the main listener or on the admin listener alike. */
export const ADMIN_PREFIX = '/_admin';

const STATES: readonly BlobState[] = ['pending', 'linked', 'unlinked', 'quarantined'];
const MAX_LIMIT = 1000;
const HOUR = 3_600_000;

/** What an admin request did, for its audit record (written when the exchange closes). */
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
 * refers to it, quarantine or release one, delete one no resource refers to. Every route sits in
 * one encapsulated plugin whose hook checks every call — however its path was spelled, since the
 * hook belongs to the routes, not to a path prefix — for HTTPS where the policy requires it, a
 * client address in `admin.ipAllow` and a token the auth section accepts carrying `admin.scope`.
 * Every call, refused or cut short too, is one audit record. Links and deletes are checked with
 * the FHIR server first: a blob is never linked to a resource that does not refer to it, nor
 * deleted while one may.
 */
export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  void app.register(
    (admin, _opts, done) => {
      routes(admin, deps);
      done();
    },
    { prefix: ADMIN_PREFIX },
  );
}

function routes(app: FastifyInstance, deps: AdminDeps): void {
  app.addHook('onRequest', async (req, reply) => {
    const call: AdminCall = { blobs: [] };
    req.adminCall = call;
    void reply.header('x-request-id', req.id);
    // Written when the exchange closes, however it closes: a change whose client left is recorded too.
    reply.raw.once('close', () => deps.audit(recordOf(req, reply.raw.statusCode, reply.raw.writableFinished)));
    const settings = deps.settings.current;
    // Turned off by a reload: gone at once (a listener cannot be taken back without a restart).
    if (!settings.config.admin.enabled) throw new GatewayError('NOT_FOUND');
    const ctx = buildContext(req.raw, settings.trustedProxies, req.id);
    call.address = ctx.clientIp.toString();
    if (settings.config.defaultRule.require.https && !ctx.secure)
      throw new GatewayError('INSECURE_TRANSPORT', 'the admin API needs HTTPS, as the policy requires');
    const allow = settings.config.admin.ipAllow.map((r) => parseRange(r)).filter((r): r is Range => r !== undefined);
    if (allow.length > 0 && !inRanges(ctx.clientIp, allow)) throw new GatewayError('FORBIDDEN');
    const raw = bearerToken(req.headers.authorization);
    if (raw === undefined) throw tokenMissing();
    const token = await settings.verifier.verify(raw);
    call.claims = token.claims;
    if (!parseScopes(token.claims).raw.has(settings.config.admin.scope)) throw insufficient(settings.config.admin.scope, 'the admin API');
  });
  app.addHook('onError', async (req, _reply, err) => {
    if (req.adminCall) req.adminCall.code = appError(err).code;
  });
  // A call no route takes is still checked (the hook above runs first) and audited.
  app.setNotFoundHandler(async (req) => {
    change(req, `${req.method} unknown`);
    throw new GatewayError('NOT_FOUND');
  });

  const blob = async (req: FastifyRequest<{ Params: { id: string } }>): Promise<BlobInfo> => {
    const id = req.params.id;
    if (!isBlobId(id)) throw new GatewayError('NOT_FOUND', 'no such blob');
    const info = await deps.store.head(id).catch((err: unknown) => Promise.reject(storeFailure(err)));
    if (!info) throw new GatewayError('NOT_FOUND', 'no such blob');
    return info;
  };
  /** A change, in the store's error terms: a blob deleted meanwhile is not found. */
  const write = async (id: string, patch: MetaPatch): Promise<BlobInfo> => {
    try {
      return await deps.store.setMeta(id, patch);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'BLOB_UNREADABLE' && !(await deps.store.head(id).catch(() => undefined)))
        throw new GatewayError('NOT_FOUND', 'no such blob');
      throw storeFailure(err);
    }
  };
  /**
   * The record again, after the FHIR server was asked: a change made meanwhile (an operator's
   * quarantine, a write's link, the sweeper) refuses the call instead of being overwritten — as
   * the sweeper's `unchanged` and BlobLifecycle.link do. What was read before the round trip is
   * no longer what the call is about (attack admin-link-undoes-quarantine).
   */
  const unchanged = async (info: BlobInfo): Promise<BlobInfo> => {
    const now = await deps.store.head(info.id).catch((err: unknown) => Promise.reject(storeFailure(err)));
    if (!now) throw new GatewayError('NOT_FOUND', 'no such blob');
    if (now.state !== info.state || now.updatedAt !== info.updatedAt)
      throw new GatewayError('BLOB_CHANGED', `the blob changed while the FHIR server was asked (now ${now.state}): look again`);
    return now;
  };
  /** Names the call before anything can refuse it (the audit record says what was tried). */
  const change = (req: FastifyRequest, name: string) => {
    req.adminCall!.change = name;
  };
  const note = (req: FastifyRequest, e: BlobEvent) => {
    req.adminCall!.blobs.push(e);
  };

  app.get<{ Params: { id: string } }>('/blobs/:id', async (req) => {
    change(req, 'find');
    const info = await blob(req);
    note(req, { action: 'read', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    return { blob: view(info) };
  });

  app.get<{ Querystring: { state?: string; cursor?: string; limit?: string } }>('/blobs', async (req) => {
    const { state } = req.query;
    change(req, 'list');
    if (state !== undefined && !STATES.includes(state as BlobState))
      throw new GatewayError('BAD_REQUEST', `state must be one of ${STATES.join(', ')}`);
    if (state) change(req, `list ${state}`);
    const cursor = req.query.cursor === undefined ? undefined : decodeCursor(req.query.cursor);
    const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT)
      throw new GatewayError('BAD_REQUEST', `limit must be 1 to ${MAX_LIMIT}`);
    const page = await deps.store.list({ limit, ...(cursor ? { cursor } : {}) }).catch((err: unknown) => Promise.reject(storeFailure(err)));
    // The store lists in its own order: a page filtered by state may be short, even empty, with a cursor.
    return {
      items: page.items.filter((i) => state === undefined || i.state === state).map(view),
      ...(page.cursor ? { cursor: Buffer.from(page.cursor).toString('base64url') } : {}),
      ...(page.unreadable?.length ? { unreadable: page.unreadable } : {}),
    };
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/blobs/:id/link', async (req) => {
    change(req, 'link');
    const info = await blob(req);
    const resource = (req.body as { resource?: unknown } | undefined)?.resource;
    if (typeof resource !== 'string' || !RELATIVE_REFERENCE.test(resource) || /\/\.+$/.test(resource))
      throw new GatewayError('BAD_REQUEST', 'the body must be {"resource": "Type/id"}');
    note(req, { action: 'link', blob: info.id, resource });
    if (info.state === 'quarantined') throw new GatewayError('LINK_UNVERIFIED', 'the blob is quarantined: release it first');
    // Never taken from a resource that still refers to it: that resource's reads would fail.
    if (info.owner && info.owner !== resource && (await ask(() => deps.upstream.currentReference(info.owner!, info))).referenced)
      throw new GatewayError('LINK_UNVERIFIED', `${info.owner} still refers to this blob`);
    if (!(await ask(() => deps.upstream.currentReference(resource, info))).referenced)
      throw new GatewayError('LINK_UNVERIFIED', `the current version of ${resource} does not refer to this blob`);
    await unchanged(info);
    return { blob: view(await write(info.id, { state: 'linked', owner: resource, retention: null })) };
  });

  app.post<{ Params: { id: string } }>('/blobs/:id/quarantine', async (req) => {
    change(req, 'quarantine');
    const info = await blob(req);
    note(req, { action: 'quarantine', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    return { blob: view(await write(info.id, { state: 'quarantined' })) };
  });

  app.post<{ Params: { id: string } }>('/blobs/:id/release', async (req) => {
    change(req, 'release');
    const info = await blob(req);
    note(req, { action: 'release', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    if (info.state !== 'quarantined') throw new GatewayError('BAD_REQUEST', 'the blob is not quarantined');
    // Back to linked to its owner (the sweeper re-checks that it is still referred to), or
    // pending (reconciled like any other) — as long as it is still the quarantine read above.
    await unchanged(info);
    return { blob: view(await write(info.id, { state: info.owner ? 'linked' : 'pending' })) };
  });

  app.delete<{ Params: { id: string }; Querystring: { force?: string } }>('/blobs/:id', async (req, reply) => {
    const force = req.query.force === 'true';
    change(req, force ? 'delete forced' : 'delete');
    const info = await blob(req);
    note(req, { action: 'delete', blob: info.id, ...(info.owner ? { resource: info.owner } : {}) });
    await mayDelete(deps, info, force);
    // Never a blob quarantined (or linked, or released) while the FHIR server was asked: a force
    // was given for the blob as it was read, not as it is now.
    await unchanged(info);
    await deps.store.delete(info.id).catch((err: unknown) => Promise.reject(storeFailure(err)));
    return reply.code(204).send();
  });
}

/**
 * Whether a blob may go by hand. Never while a current version of a resource refers to it, even
 * forced. Otherwise, unless forced (an operator's deliberate, audited decision, e.g. content
 * filed under the wrong patient): not while its retention class keeps it (earlier versions still
 * read it), not a blob with an owner the sweeper has not yet unlinked and classed, not one whose
 * write may still be in flight (younger than pendingGraceHours), not one nothing says the purpose
 * of (no way to ask the upstream). Whatever its state — a quarantine keeps what the record knows.
 * Quarantine is the way to withdraw content at once.
 */
async function mayDelete(deps: AdminDeps, info: BlobInfo, force: boolean): Promise<void> {
  const retention = deps.settings.current.config.retention;
  if (!force) {
    if (info.retainUntil && Date.parse(info.retainUntil) > Date.now())
      throw new GatewayError('BLOB_IN_USE', `kept by its retention class (${info.retention ?? 'unlinked'}) until ${info.retainUntil}`);
    if (info.owner && !info.retainUntil)
      throw new GatewayError('BLOB_IN_USE', `linked to ${info.owner}: the sweeper unlinks it and its retention class keeps it first`);
    if (!info.owner && Date.parse(info.createdAt) > Date.now() - retention.pendingGraceHours * HOUR)
      throw new GatewayError('BLOB_IN_USE', 'written less than retention.pendingGraceHours ago: its resource may still be on its way');
  }
  if (info.owner) {
    if ((await ask(() => deps.upstream.currentReference(info.owner!, info))).referenced)
      throw new GatewayError('BLOB_IN_USE', `${info.owner} refers to this blob: change or delete it there first`);
    return;
  }
  if (!info.intent) {
    // A forced delete is the only way out for a blob a crash left between its store and its
    // resource's answer (no owner, no intent): nothing can be asked, the operator decides.
    if (force) return;
    throw new GatewayError('BLOB_IN_USE', 'nothing records what it was written for: no way to ask whether a resource refers to it');
  }
  const owner = await ask(() => deps.upstream.findReference(info.intent!, info, new Date(info.createdAt)));
  if (owner) throw new GatewayError('BLOB_IN_USE', `${owner} refers to this blob: change or delete it there first`);
}

/** What each named call does (its first word), as AuditEvent.action says it: a HEAD of a find is a read too. */
const CALL_ACTIONS: Readonly<Record<string, AuditRecord['action']>> = {
  find: 'read',
  list: 'read',
  link: 'update',
  quarantine: 'update',
  release: 'update',
  delete: 'delete',
};

/** A call that matched no route, by its method. */
function methodAction(method: string): AuditRecord['action'] {
  return method === 'GET' || method === 'HEAD' ? 'read' : method === 'DELETE' ? 'delete' : 'execute';
}

/** The record of one admin call. */
function recordOf(req: FastifyRequest, status: number, finished: boolean): AuditRecord {
  const call = req.adminCall!;
  return {
    audit: 1,
    time: new Date().toISOString(),
    reqId: req.id,
    action: (call.change ? CALL_ACTIONS[call.change.split(' ')[0]] : undefined) ?? methodAction(req.method),
    outcome: !finished ? 'aborted' : status < 400 ? 'success' : status < 500 ? 'refused' : 'failed',
    status: finished ? status : 499,
    ...(call.code ? { code: call.code } : {}),
    who: { ...whoOf(call.claims, undefined), system: 'admin-api' },
    what: { change: call.change ?? req.method, blobs: call.blobs },
    ...(call.address ? { where: { address: call.address, proto: req.protocol } } : {}),
  };
}

/** Cursors go out base64url-encoded (a store's own may hold any character) and come back so. */
function decodeCursor(text: string): string {
  if (!/^[A-Za-z0-9_-]{1,8192}$/.test(text)) throw new GatewayError('BAD_REQUEST', 'not a cursor');
  return Buffer.from(text, 'base64url').toString('utf8');
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
