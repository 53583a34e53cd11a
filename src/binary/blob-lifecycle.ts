import { unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import { ContentCheck } from '../content/check.js';
import { OverrideGuard } from '../content/override-guard.js';
import { GatewayError } from '../errors/catalogue.js';
import { storeFailure } from '../errors/map.js';
import type { BlobRef } from '../fhir/blob-reference.js';
import { externalizeBody, type ExternalizedBody } from '../rewrite/externalize-body.js';
import type { ContentLinks } from '../rewrite/externalize.js';
import { clientGone } from '../lib/spool-file.js';
import { authorizeConditionalReference } from '../security/bundle.js';
import type { Exchange } from '../security/exchange.js';
import type { EffectiveRule } from '../security/policy.js';
import { servable, type BlobInfo, type BlobStore, type BlobTags, type BlobUpload } from '../storage/blob-store.js';
import { uploadPurpose } from './file-metadata.js';
import { noteBlob, type BlobEventLog } from '../lib/blob-events.js';
import { INTENT } from '../storage/meta.js';
import { FHIR_JSON, outcomeUnknown, send, type UpstreamClient } from '../upstream/client.js';

/** The request a blob operation is for: its id (for the log) and its blob events (for the audit trail). */
type RequestCtx = BlobEventLog & { readonly id: string };

/** A write of a resource whose content the gateway stored (ARCHITECTURE.md, blob lifecycle). */
export interface ResourceWrite {
  readonly method: string;
  /** Path and query relative to the FHIR base. */
  readonly path: string;
  /** Extra request headers (If-Match). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The blobs the body refers to, and their checked content types. */
  readonly blobs: readonly { readonly id: string; readonly contentType: string }[];
  readonly body: Buffer | Readable;
  readonly length: number;
  /** The resource the blobs belong to, once the upstream has answered (`Type/id`). */
  owner(up: IncomingMessage): string | undefined;
}

/**
 * Where every blob's life is decided: stored `pending` before the upstream write, `linked` to
 * its resource once the upstream accepted it, deleted when refused; and checked against the
 * reference the upstream holds before any byte of it is served.
 */
export class BlobLifecycle {
  constructor(
    private readonly store: BlobStore,
    private readonly client: UpstreamClient,
    private readonly log: Logger,
    /** The public base the gateway's content links start with (they may come back in a write). */
    private readonly publicBase: string,
  ) {}

  /**
   * Streams the request body (or `from.body`, a multipart part) into the store through the content
   * check; undefined when the client went away (nothing to answer). `from` is a GraphQL upload's:
   * its part, its own rule (its size limit), who uploaded it for whom, and a privileged type override
   * (which still refuses executable and active content: OverrideGuard).
   */
  async upload(
    x: Exchange,
    declared: string,
    from?: { readonly body: Readable; readonly rule: EffectiveRule; readonly upload: BlobUpload },
  ): Promise<BlobInfo | undefined> {
    const tags = tagsOf(x);
    const gone = clientGone(x.res);
    const body = from?.body ?? x.req;
    const override = from?.upload.override === true;
    const checked = (
      override
        ? pipeline(body, new OverrideGuard(), new ContentCheck(declared), () => undefined)
        : pipeline(body, new ContentCheck(declared), () => undefined)
    ) as Readable;
    try {
      const info = await this.store.put(
        checked,
        { contentType: declared, ...tags, ...(from ? { upload: from.upload } : {}) },
        { maxBytes: (from?.rule ?? x.rule).limits.maxRequestBytes, rule: (from?.rule ?? x.rule).name, signal: gone.signal },
      );
      noteBlob(x.ctx, { action: 'write', blob: info.id, bytes: info.size, ...(override ? { typeOverride: declared } : {}) });
      return info;
    } catch (err) {
      if (gone.signal.aborted) return undefined;
      throw storeFailure(err);
    } finally {
      gone.release();
    }
  }

  /**
   * A FHIR JSON body through the rewrite engine's write direction into a private spool file, its
   * attachment data into the store (pending until the upstream answers). Undefined when the
   * client went away. `binaryMinBytes`: Binary.data is externalized from this size (raw and FHIR
   * Binary uploads then behave alike). `own`: an update's own content links (ContentLinks).
   */
  async externalize(
    x: Exchange,
    body: Readable,
    opts: { readonly binaryMinBytes?: number; readonly own?: ContentLinks['own']; readonly refuseLinks?: string } = {},
  ): Promise<ExternalizedBody | undefined> {
    const { binaryMinBytes, own, refuseLinks } = opts;
    const { config, policy } = x.settings;
    const maxBytes = x.rule.limits.maxRequestBytes;
    const tags = tagsOf(x);
    const gone = clientGone(x.res);
    let spooled: ExternalizedBody | undefined;
    try {
      spooled = await externalizeBody(
        body,
        { dir: config.server.spoolDir, maxBytes, signal: gone.signal },
        {
          store: this.store,
          minBytes: config.externalize.minBytes,
          ...(binaryMinBytes !== undefined ? { binaryMinBytes } : {}),
          maxBytes,
          allowedTypes: (rt) => policy.allowedTypes(rt),
          tags,
          links: { base: this.publicBase, ...(own ? { own } : {}), ...(refuseLinks ? { refuse: refuseLinks } : {}) },
        },
      );
    } finally {
      gone.release();
    }
    for (const b of spooled?.blobs ?? []) noteBlob(x.ctx, { action: 'write', blob: b.info.id, bytes: b.info.size });
    if (!spooled || spooled.conditionalReferences.length === 0) return spooled;
    // A Bundle's are authorized entry by entry before its body is externalized (security/bundle.ts).
    if (x.interaction.kind === 'batch' || x.interaction.kind === 'transaction') return spooled;
    try {
      for (const ref of spooled.conditionalReferences) await authorizeConditionalReference(x.checkInput(), ref, x.settings);
    } catch (err) {
      await this.discard(
        spooled.blobs.map((b) => b.info.id),
        x.ctx,
      );
      await unlink(spooled.file).catch(() => undefined);
      throw err;
    }
    return spooled;
  }

  /**
   * The blob a reference names, checked against the hash the upstream holds and against the
   * resource it was written for: a swapped, altered or borrowed blob is never served (a reference
   * copied into another resource would otherwise read content its securityContext protects).
   * A signed URL names its blob without a hash: the signature vouches for the id, the owner check
   * for the rest.
   */
  async blobFor(ref: BlobRef | { readonly id: string; readonly sha256?: undefined }, owner: string): Promise<BlobInfo> {
    let info: BlobInfo | undefined;
    try {
      info = await this.store.head(ref.id);
    } catch (err) {
      throw storeFailure(err);
    }
    if (!info) throw new GatewayError('BLOB_UNREADABLE', 'the content this resource refers to is missing from the store');
    if (ref.sha256 !== undefined && info.sha256 !== ref.sha256)
      throw new GatewayError('BLOB_UNREADABLE', 'the stored content does not match the hash the FHIR server holds');
    if (info.state === 'quarantined') throw new GatewayError('BLOB_UNREADABLE', 'the stored content is quarantined by an operator');
    if (!servable(info.state) || info.owner !== owner)
      throw new GatewayError('BLOB_UNREADABLE', 'the stored content was not written for this resource');
    return info;
  }

  /**
   * Sends a resource the gateway rewrote to the upstream. Its answer decides the blobs' fate:
   * accepted → `linked` to its owner; refused or unreachable → deleted. Resolves with the
   * upstream's response, for the caller to relay.
   */
  async commit(x: Exchange, w: ResourceWrite): Promise<IncomingMessage> {
    const ids = w.blobs.map((b) => b.id);
    let up: IncomingMessage;
    try {
      const headers = { ...w.headers, 'content-type': FHIR_JSON, 'content-length': String(w.length), accept: FHIR_JSON };
      up = await send(this.client.request(x, w.method, w.path, headers), w.body);
    } catch (err) {
      await this.unsettled(ids, x.ctx, err);
      throw err;
    }
    const status = up.statusCode ?? 502;
    if (status < 200 || status >= 300) {
      await this.discard(ids, x.ctx);
      return up;
    }
    // A create answered 200, not 201, created nothing: a conditional create matched an existing
    // resource (HAPI names it in Location), which never referred to these blobs — the upstream
    // says so itself, so they go now (a sweep might never get through a large type to prove it).
    if (w.method === 'POST' && status === 200) {
      await this.discard(ids, x.ctx);
      return up;
    }
    const owner = w.owner(up);
    if (owner === undefined) {
      // Accepted, but no resource named (a conditional create that matched an existing one
      // answers 200 without Location): nothing is known to refer to the blobs, so they stay
      // pending for the sweeper to reconcile — never linked to no one, which nothing would recheck.
      if (ids.length)
        this.log.warn({ reqId: x.ctx.id, blobs: ids }, 'upstream accepted the write but named no resource: blobs left pending');
      return up;
    }
    for (const blob of w.blobs) await this.link(blob.id, blob.contentType, owner, x.ctx);
    return up;
  }

  /** Marks a blob the upstream accepted as `linked` to its resource. */
  async link(id: string, contentType: string, owner: string, ctx: RequestCtx): Promise<void> {
    try {
      // An operator may have quarantined it while the upstream answered: it stays quarantined,
      // learning its owner (a release then links it).
      const quarantined = (await this.store.head(id))?.state === 'quarantined';
      await this.store.setMeta(id, quarantined ? { contentType, owner } : { state: 'linked', contentType, owner });
      noteBlob(ctx, { action: 'link', blob: id, resource: owner });
    } catch (err) {
      // The upstream has the resource, so the blob must stay; pending is what a sweeper checks
      // against the upstream before removing anything.
      this.log.warn({ reqId: ctx.id, blob: id, cause: (err as Error).message }, 'blob accepted upstream but could not be marked linked');
    }
  }

  /**
   * The upstream write failed: blobs it never got are deleted; blobs of a write whose answer was
   * lost (sent whole, then the connection dropped or the answer came too late) stay `pending` —
   * the upstream may hold a resource referring to them — for the sweeper to reconcile
   * (binary/sweeper.ts). The client gets the 502/504 either way.
   */
  async unsettled(ids: readonly string[], ctx: RequestCtx, err: unknown): Promise<void> {
    if (!outcomeUnknown(err)) return this.discard(ids, ctx);
    if (ids.length)
      this.log.warn({ reqId: ctx.id, blobs: ids }, 'upstream write outcome unknown: blobs left pending for the sweeper to reconcile');
  }

  /**
   * Blobs of a Bundle left pending (its answer lost, or unreadable per entry) learn what they were
   * written for — their entry's request (bundle-writes.ts `entryIntent`) — so the sweeper can ask
   * the upstream about them. Best effort: one that cannot be tagged is kept by the sweeper, never
   * deleted.
   */
  async intend(blobs: readonly { readonly id: string; readonly intent: string | undefined }[], ctx: RequestCtx): Promise<void> {
    for (const b of blobs) {
      if (b.intent === undefined || !INTENT.test(b.intent)) continue;
      await this.store.setMeta(b.id, { intent: b.intent }).catch((err: unknown) => {
        this.log.warn({ reqId: ctx.id, blob: b.id, cause: (err as Error).message }, 'could not record what a pending blob was written for');
      });
    }
  }

  /** Deletes blobs whose resource the upstream refused (or never got). */
  async discard(ids: readonly string[], ctx: RequestCtx): Promise<void> {
    for (const id of ids) {
      try {
        await this.store.delete(id);
        noteBlob(ctx, { action: 'delete', blob: id });
      } catch (err) {
        this.log.error(
          { reqId: ctx.id, blob: id, cause: (err as Error).message },
          'could not delete a refused blob; it stays pending for the sweeper',
        );
      }
    }
  }
}

/**
 * The resource a write created or replaced, `Type/id`: the id the request named, else the one in
 * the upstream's Location (Content-Location) for a create.
 */
export function writtenResource(type: string, id: string | undefined, up: IncomingMessage): string | undefined {
  if (id !== undefined) return `${type}/${id}`;
  // `type` is a resource type the classifier checked: letters only, safe in a pattern.
  const m = new RegExp(`/${type}/([A-Za-z0-9\\-.]{1,64})(/|$)`).exec(String(up.headers.location ?? up.headers['content-location'] ?? ''));
  return m ? `${type}/${m[1]}` : undefined;
}

/** What the blobs a request stores are for (BlobTags). */
function tagsOf(x: Exchange): BlobTags {
  const intent = intentOf(x);
  const purpose = uploadPurpose(x.req.headers, x.settings.config.content.purposes);
  return { ...(intent ? { intent } : {}), ...(purpose ? { purpose } : {}) };
}

/**
 * What a single resource's write is for (`Type/id` for an update, `Type` for a create), recorded
 * with its blobs so a sweeper can ask the upstream about one left pending. A Bundle says per
 * entry, which a blob written while it streams does not know: none (BlobLifecycle.intend tags
 * the ones left pending afterwards).
 */
function intentOf(x: Exchange): string | undefined {
  const i = x.interaction;
  if (i.kind === 'batch' || i.kind === 'transaction' || i.resourceType === undefined) return undefined;
  const intent = i.id !== undefined && i.kind !== 'create' ? `${i.resourceType}/${i.id}` : i.resourceType;
  return INTENT.test(intent) ? intent : undefined;
}
