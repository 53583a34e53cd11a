import { essence, isActiveContent } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { parseAttachmentPath } from '../fhir/attachment-path.js';
import { findBlobRef, type BlobRef } from '../fhir/blob-reference.js';
import { readStoredRefs } from '../rewrite/stored-refs.js';
import type { Interaction } from '../fhir/interaction.js';
import { contentDisposition, downloadNameRule, isDownloadName } from '../lib/download-name.js';
import { parseDuration } from '../lib/duration.js';
import { etagMatches } from '../lib/range.js';
import { Exchange } from '../security/exchange.js';
import type { BinaryAccess } from './binary-access.js';
import { requireScopes } from '../security/checks.js';
import type { EffectiveRule } from '../security/policy.js';
import { checkRule } from '../security/reach.js';
import type { Settings } from '../security/settings.js';
import type { IssueRequest, UrlSigner, VerifiedUrl } from '../signed/signer.js';
import type { BlobInfo, StoreUrlGap } from '../storage/blob-store.js';
import { parseSpan } from '../lib/ip.js';
import { noteUrlGrant } from '../lib/blob-events.js';
import { urlIdOf } from '../signed/signature.js';
import { storeFailure } from '../errors/map.js';
import { FHIR_JSON } from '../upstream/client.js';
import type { PlaneDeps } from './deps.js';

/** The `$file-url` parameters; anything else is refused, so a misspelt one is not silently ignored. */
const PARAMS: ReadonlySet<string> = new Set(['path', 'window', 'policy', 'ip', 'disposition', 'filename', 'via', 'permission', '_format']);
/** What a write URL's upload keeps of the request's headers. */
const UPLOAD_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-type',
  'content-length',
  'transfer-encoding',
  'expect',
  'connection',
  'user-agent',
]);

/** The interaction a signed URL's follow is governed by: a read of the content, as `$binary-access-read` is. */
export function contentReadOf(type: string, id: string): Interaction {
  return {
    kind: 'operation',
    operation: 'binary-access-read',
    resourceType: type,
    id,
    method: 'GET',
    path: `${type}/${id}/$binary-access-read`,
    query: '',
  };
}

/**
 * Every rule that governs reading a resource's content: `$binary-access-read`'s, `$file-url`'s,
 * and the type's read rules. A signed URL is issued only to a caller all of them admit, and
 * followed only under all their network conditions (client address, HTTPS): a URL never widens
 * what a token could do.
 */
export function contentRulesOf(settings: Settings, type: string, id: string): readonly EffectiveRule[] {
  const fileUrl: Interaction = { ...contentReadOf(type, id), operation: 'file-url', path: `${type}/${id}/$file-url` };
  return [
    ...new Set([settings.policy.ruleFor(contentReadOf(type, id)), settings.policy.ruleFor(fileUrl), ...settings.policy.readRulesOf(type)]),
  ];
}

/**
 * Signed file URLs (docs/signed-urls.md). `[type]/[id]/$file-url?path=…` gives a URL for the
 * stored content of one attachment, after the same checks as `$binary-access-read` (the caller's
 * scopes, the Binary's securityContext, the rule's address and transport); asking again is the
 * refresh. Following the URL serves the content with the token-less checks the URL carries.
 */
export class FileUrls {
  constructor(
    private readonly d: PlaneDeps,
    /** Where a write URL's upload goes: `$binary-access-write`, as if the issuer had sent it. */
    private readonly access: BinaryAccess,
  ) {}

  /** `GET [type]/[id]/$file-url`: a Parameters resource with `url`, `expiresAt`, `startsAt`, `policy`. */
  async issue(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    const signer = this.signer(x);
    if (req.method !== 'GET') throw new GatewayError('METHOD_NOT_ALLOWED', '$file-url is a GET', { headers: { allow: 'GET' } });
    if (!i.resourceType || !i.id || i.versionId)
      throw new GatewayError(
        'BAD_REQUEST',
        '$file-url works on a resource instance (its current version), e.g. DocumentReference/123/$file-url',
      );
    const q = new URLSearchParams(i.query);
    for (const name of q.keys())
      if (!PARAMS.has(name)) throw new GatewayError('BAD_REQUEST', `$file-url has no parameter '${name.slice(0, 32)}'`);
    const window = q.get('window');
    const windowMs = window === null ? undefined : parseDuration(window);
    if (windowMs === undefined && window !== null) throw new GatewayError('BAD_REQUEST', "'window' is a duration like 30s, 15m, 1h");
    const via = q.get('via') ?? 'gateway';
    if (via !== 'gateway' && via !== 'store') throw new GatewayError('BAD_REQUEST', "'via' is gateway or store");
    const permission = q.get('permission') ?? 'r';
    if (permission === 'w') return this.issueWrite(x, signer, q, windowMs, via);
    if (permission !== 'r') throw new GatewayError('BAD_REQUEST', "'permission' is r (read, the default) or w (write)");
    const steps = i.resourceType === 'Binary' && !q.has('path') ? 'binary' : parseAttachmentPath(q.get('path'), i.resourceType);
    // The pipeline checked the caller against `$file-url`'s rule (and the type's read rules); the
    // content's other rules hold too, `$binary-access-read`'s first: the same checks as reading it.
    const rules = this.admitRead(x, i.resourceType, i.id);
    x.continue100();

    const got = await this.d.resources.attachment(x, `/${i.resourceType}/${i.id}`, steps);
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
      return;
    }
    try {
      if (got.resource.resourceType === 'Binary') await this.d.guard.binaryRead(x, got.resource);
      const attachment = got.attachment;
      if (!attachment) throw new GatewayError('NOT_FOUND', 'no attachment at that path');
      const ref = findBlobRef((attachment['_data'] as { extension?: unknown } | undefined)?.extension);
      if (!ref)
        throw new GatewayError(
          'NOT_FOUND',
          'no stored content at that path: content the FHIR server holds inline has no signed URL (read it with $binary-access-read)',
        );
      const owner = `${i.resourceType}/${i.id}`;
      const info = await this.d.blobs.blobFor(ref, owner);
      const declared = essence(typeof attachment['contentType'] === 'string' ? attachment['contentType'] : undefined) ?? info.contentType;
      const request: IssueRequest = {
        type: i.resourceType,
        id: i.id,
        blobId: ref.id,
        sha256: ref.sha256,
        permissions: 'r',
        windowMs,
        policy: q.get('policy') ?? undefined,
        sip: q.get('ip') ?? undefined,
        httpAllowed: !rules.some((r) => r.require.https),
        contentType: declared,
        disposition: disposition(q.get('disposition'), q.get('filename'), declared),
      };
      const issued = await this.grantRead(x, signer, request, via, rules);
      sendIssued(x, issued.url, issued, via);
    } finally {
      await got.release();
    }
  }

  /**
   * A read URL for content a resource holds, asked for outside `$file-url` (GraphQL
   * refreshFileUrl of a bound file): the same checks — every rule for reading the content, the
   * caller's right to read the resource itself (its patient compartment for a patient's token),
   * the resource's current version still holding the blob — and the same audit grant.
   */
  async readUrl(
    x: Exchange,
    owner: string,
    blobId: string,
    windowMs: number | undefined,
    keep: { readonly ip?: string; readonly filename?: string } = {},
  ): Promise<{ url: string; expiresAt: Date }> {
    const signer = this.signer(x);
    const [type, id] = owner.split('/') as [string, string];
    // A Binary's content is governed by its securityContext, which $file-url checks on the Binary itself.
    if (type === 'Binary') throw new GatewayError('BAD_REQUEST', `ask ${owner}/$file-url for a URL of a Binary's content`);
    const rules = this.admitRead(x, type, id);
    // The FHIR server is asked as `$file-url` would ask it: with the caller's token wherever a rule
    // for reading the content forwards it (its own access rules then apply too).
    const asker = x.withRule(rules.find((r) => r.forwardAuthorization) ?? rules[0]);
    await this.d.guard.require(asker, owner).catch((err: unknown) => {
      if (err instanceof GatewayError && err.code === 'INSUFFICIENT_SCOPE')
        throw new GatewayError('INSUFFICIENT_SCOPE', `the token may not read ${owner}, which holds the file`);
      throw err;
    });
    const ref = await this.heldRef(asker, owner, blobId).catch((err: unknown) => {
      // Deleted, or its content replaced: no URL (a follow would answer 404 too).
      if (err instanceof GatewayError && err.code === 'BLOB_UNREADABLE')
        throw new GatewayError('NOT_FOUND', `${owner} no longer holds the file (deleted, or its content replaced)`);
      throw err;
    });
    const info = await this.d.blobs.blobFor(ref, owner);
    const request: IssueRequest = {
      type,
      id,
      blobId,
      sha256: ref.sha256,
      permissions: 'r',
      windowMs,
      httpAllowed: !rules.some((r) => r.require.https),
      contentType: info.contentType,
      disposition: disposition('attachment', keep.filename ?? null, info.contentType),
      ...(keep.ip !== undefined ? { sip: keep.ip } : {}),
    };
    return this.grantRead(x, signer, request, 'gateway', rules);
  }

  /**
   * Every rule for reading a resource's content admits the caller (the pipeline checked the
   * exchange's own rule already): the same checks as reading it with `$binary-access-read`.
   */
  private admitRead(x: Exchange, type: string, id: string): readonly EffectiveRule[] {
    const rules = contentRulesOf(x.settings, type, id);
    const read = contentReadOf(type, id);
    for (const rule of rules) {
      if (rule === x.rule) continue;
      checkRule(x.checkInput(), x.settings, rule);
      void requireScopes({ ...x.checkInput(), interaction: read, rule }, x.settings);
    }
    return rules;
  }

  /** Signs a read URL (the gateway's, or the store's own) and records the grant in the audit trail. */
  private async grantRead(
    x: Exchange,
    signer: UrlSigner,
    request: IssueRequest,
    via: string,
    rules: readonly EffectiveRule[],
  ): Promise<{ url: string; startsAt: Date; expiresAt: Date; policy: string | undefined; keyId?: string | undefined }> {
    const issued = via === 'store' ? await this.storeUrl(x, signer, request, rules) : { ...signer.issue(request), url: undefined };
    noteUrlGrant(x.ctx, {
      url: issued.urlId,
      resource: `${request.type}/${request.id}`,
      blob: request.blobId,
      permission: 'r',
      expiresAt: issued.expiresAt.toISOString(),
      via: via === 'store' ? 'store' : 'gateway',
      ...(issued.policy ? { policy: issued.policy } : {}),
      ...(request.sip ? { ip: request.sip } : {}),
    });
    return { ...issued, url: issued.url ?? `${this.d.publicBase}/${issued.pathAndQuery}` };
  }

  /**
   * A signed URL for stored content an answer links instead of inlining (`signedUrls.links`), for
   * the caller of `x`: only where `$file-url` would give one — the type readable, every rule for
   * reading the content admitting the caller (checked once per type per exchange). Otherwise
   * undefined, and the answer keeps the plain link. Default window and policy.
   */
  linker(x: Exchange): (owner: string, blob: BlobRef) => string | undefined {
    const signer = x.settings.signer;
    const allowed = new Map<string, boolean>();
    return (owner, blob) => {
      const [type, id] = owner.split('/');
      // Binary's content is governed by its securityContext, which a link is not checked against here.
      if (!signer || !type || !id || type === 'Binary' || !x.rewrite.reader.mayRead(type)) return undefined;
      let ok = allowed.get(type);
      if (ok === undefined) {
        ok = true;
        try {
          for (const rule of contentRulesOf(x.settings, type, id)) {
            checkRule(x.checkInput(), x.settings, rule);
            void requireScopes({ ...x.checkInput(), interaction: contentReadOf(type, id), rule }, x.settings);
          }
        } catch {
          ok = false;
        }
        allowed.set(type, ok);
      }
      if (!ok) return undefined;
      const https = contentRulesOf(x.settings, type, id).some((r) => r.require.https);
      try {
        const issued = signer.issue({ type, id, blobId: blob.id, sha256: blob.sha256, permissions: 'r', httpAllowed: !https });
        noteUrlGrant(x.ctx, {
          url: issued.urlId,
          resource: owner,
          blob: blob.id,
          permission: 'r',
          expiresAt: issued.expiresAt.toISOString(),
          via: 'gateway',
          ...(issued.policy ? { policy: issued.policy } : {}),
          link: true,
        });
        return `${this.d.publicBase}/${issued.pathAndQuery}`;
      } catch {
        return undefined; // the default policy ended, say: the plain link
      }
    };
  }

  /** `GET|HEAD [base]/_file/{type}/{id}/{blob}?sv=…&sig=…`, verified by the flow: the content, raw. */
  async follow(x: Exchange, v: VerifiedUrl): Promise<void> {
    // The holder is nobody the gateway checked: their credentials go nowhere (the URL is the credential).
    for (const name of ['authorization', 'proxy-authorization', 'cookie']) delete x.req.headers[name];
    const info = await this.contentOf(x, v).catch((err: unknown) => {
      // Gone, replaced or quarantined since the URL was made: not found, whichever it was.
      if (err instanceof GatewayError && err.code === 'BLOB_UNREADABLE')
        throw new GatewayError(
          'NOT_FOUND',
          'the content this URL named is no longer available here (ask for a new URL: $file-url on the resource that holds it, or refreshFileUrl for a GraphQL upload)',
        );
      throw err;
    });
    // Blobs never change: the content hash is a strong validator.
    const etag = `"${info.sha256}"`;
    const remaining = Math.max(0, Math.floor((v.expiresAtMs - Date.now()) / 1000));
    const cacheControl = `private, max-age=${remaining}`;
    const headers = { 'x-request-id': x.ctx.id, etag };
    if (etagMatches(x.req.headers['if-none-match'], etag)) {
      x.res.writeHead(304, { ...headers, 'cache-control': cacheControl });
      x.res.end();
      return;
    }
    const contentType = v.fields.rsct ?? info.contentType ?? 'application/octet-stream';
    await this.d.raw.serve(
      x,
      headers,
      { contentType, size: info.size, ref: { id: info.id, sha256: info.sha256 } },
      { cacheControl, disposition: v.fields.rscd ?? 'attachment' },
    );
  }

  /**
   * The blob a URL names, if the resource in its path may serve it: linked to it, or a file
   * uploaded for it (GraphQL uploadFile) and not bound to a resource yet.
   */
  private async contentOf(x: Exchange, v: VerifiedUrl): Promise<BlobInfo> {
    const owner = `${v.type}/${v.id}`;
    let info: BlobInfo | undefined;
    try {
      info = await this.d.store.head(v.blobId);
    } catch (err) {
      throw storeFailure(err);
    }
    // The content the URL was issued for, by hash: a blob swapped under it serves nothing.
    if (info && v.sha256 !== undefined && info.sha256 !== v.sha256)
      throw new GatewayError('BLOB_UNREADABLE', 'the stored content is not the one the URL was issued for');
    if (info?.state === 'pending' && info.upload?.for === owner && info.owner === undefined) return info;
    const held = await this.d.blobs.blobFor({ id: v.blobId, ...(v.sha256 !== undefined ? { sha256: v.sha256 } : {}) }, owner);
    await this.heldRef(x, owner, v.blobId);
    return held;
  }

  /**
   * The reference by which the resource's current version holds the content: a URL dies with a FHIR delete
   * of its resource or a replacement of its content, as a token's `$binary-access-read` (which reads
   * the current version) would. One upstream read per follow, of the resource's references only.
   */
  private async heldRef(x: Exchange, owner: string, blobId: string): Promise<BlobRef> {
    const up = await this.d.resources.get(x, `/${owner}`);
    if (up.statusCode === 404 || up.statusCode === 410) {
      up.resume();
      throw new GatewayError('BLOB_UNREADABLE', 'the resource this URL was issued for is gone');
    }
    if (up.statusCode !== 200) {
      up.resume();
      throw new GatewayError('UPSTREAM_INVALID', `the FHIR server answered ${up.statusCode} for the resource this URL names`);
    }
    const refs = await readStoredRefs(up);
    for (const ref of refs.values()) if (ref.id === blobId) return ref;
    throw new GatewayError('BLOB_UNREADABLE', "the resource's current version no longer holds this content");
  }

  /**
   * A URL the store serves itself: the same checks, window and policy as the gateway's, but the
   * bytes never pass the gateway (nor its per-chunk integrity check: the store's own applies).
   * Refused when the URL needs a constraint the store cannot carry, unless that gap is accepted.
   */
  private async storeUrl(
    x: Exchange,
    signer: UrlSigner,
    r: IssueRequest,
    rules: readonly EffectiveRule[],
  ): Promise<{
    url: string;
    pathAndQuery?: undefined;
    startsAt: Date;
    expiresAt: Date;
    policy: string | undefined;
    keyId?: undefined;
    urlId: string;
  }> {
    const cfg = x.settings.config.signedUrls.store;
    const store = this.d.store;
    if (!cfg.enabled) throw new GatewayError('BAD_REQUEST', 'store URLs are off (signedUrls.store.enabled)');
    if (!store.readUrls || !store.readUrl)
      throw new GatewayError('BAD_REQUEST', `the ${store.driver} store serves no URLs of its own: leave out via=store`);
    if (r.sip !== undefined && !parseSpan(r.sip))
      throw new GatewayError('BAD_REQUEST', `'${r.sip.slice(0, 64)}' is not an address or range`);
    const plan = signer.plan(r);
    const needs: StoreUrlGap[] = [
      ...(r.sip !== undefined ? (['ip'] as const) : []),
      ...(plan.policy !== undefined ? (['policy'] as const) : []),
      ...(!r.httpAllowed ? (['https'] as const) : []),
      // Every store URL outlives a quarantine or a delete of its blob until it expires.
      'withdraw',
    ];
    const gaps = needs.filter((g) => store.readUrls!.gaps.has(g) && !cfg.acceptGaps.includes(g));
    // The rules' client-address conditions (allow and deny lists) are no store's to enforce: one
    // `sip` range cannot say them, and the gateway never sees the download.
    if (rules.some((rule) => rule.ipAllow.length > 0 || rule.ipDeny.length > 0) && !cfg.acceptGaps.includes('ip') && !gaps.includes('ip'))
      gaps.push('ip');
    if (gaps.length > 0)
      throw new GatewayError(
        'BAD_REQUEST',
        `the ${store.driver} store cannot enforce ${gaps.map((g) => GAP_NAMES[g]).join(', ')} on its own URLs: use the gateway's (leave out via=store), or accept the gap in signedUrls.store.acceptGaps`,
      );
    if (plan.end - plan.start > store.readUrls.maxWindowMs)
      throw new GatewayError('BAD_REQUEST', `the ${store.driver} store's URLs live at most ${store.readUrls.maxWindowMs / 1000} s`);
    const startsAt = new Date(plan.start);
    const expiresAt = new Date(plan.end);
    const url = await store
      .readUrl(r.blobId, {
        startsAt,
        expiresAt,
        contentType: r.contentType,
        disposition: r.disposition,
        sip: r.sip,
        httpsOnly: !r.httpAllowed,
        policy: plan.policy,
        cacheControl: storeCacheControl(x.settings.config.content.cacheControl, plan.end - plan.start),
      })
      .catch((err: unknown) => {
        throw storeFailure(err);
      });
    return { url, startsAt, expiresAt, policy: plan.policy, urlId: urlIdOf(url) };
  }

  /**
   * A write URL: `POST` to it uploads new content for one attachment, exactly as
   * `$binary-access-write` would for the issuer (content type allow-list, sniffing, size limit,
   * the resource updated conditionally on the version it had). Issued to a caller every rule for
   * writing the content admits (SMART `u` on the type); always through the gateway (never a
   * store URL: content is checked before anything is committed). Not for Binary yet (its
   * securityContext is checked against a caller the URL does not carry): PUT the Binary.
   */
  private async issueWrite(x: Exchange, signer: UrlSigner, q: URLSearchParams, windowMs: number | undefined, via: string): Promise<void> {
    const i = x.interaction;
    const type = i.resourceType!;
    const id = i.id!;
    if (via !== 'gateway')
      throw new GatewayError('BAD_REQUEST', 'write URLs always go through the gateway: content is checked before anything is committed');
    if (type === 'Binary')
      throw new GatewayError('BAD_REQUEST', 'write URLs for Binary are not supported: update the Binary (PUT) with a token');
    if (q.has('disposition') || q.has('filename')) throw new GatewayError('BAD_REQUEST', "'disposition' and 'filename' are for read URLs");
    const path = q.get('path');
    parseAttachmentPath(path, type); // refused here if malformed, not at the upload
    const write = contentWriteOf(type, id, path!);
    for (const rule of contentWriteRulesOf(x.settings, type, id)) {
      if (rule !== x.rule) checkRule(x.checkInput(), x.settings, rule);
      void requireScopes({ ...x.checkInput(), interaction: write, rule }, x.settings);
    }
    // Bound to the version it is issued for: a write in between (or the URL's own first use) makes it stale (412).
    const got = await this.d.resources.resource(x, `/${type}/${id}`);
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
      return;
    }
    const versionId = got.resource.meta?.versionId;
    if (typeof versionId !== 'string' || !/^[A-Za-z0-9\-.]{1,64}$/.test(versionId))
      throw new GatewayError('UPSTREAM_INVALID', 'the resource has no version a write URL could be bound to');
    const issued = signer.issue({
      type,
      id,
      blobId: '',
      permissions: 'w',
      versionId,
      windowMs,
      policy: q.get('policy') ?? undefined,
      sip: q.get('ip') ?? undefined,
      httpAllowed: !contentWriteRulesOf(x.settings, type, id).some((r) => r.require.https),
      attachmentPath: path!,
    });
    noteUrlGrant(x.ctx, {
      url: issued.urlId,
      resource: `${type}/${id}`,
      path: path!,
      permission: 'w',
      expiresAt: issued.expiresAt.toISOString(),
      via: 'gateway',
      ...(issued.policy ? { policy: issued.policy } : {}),
      ...(q.get('ip') ? { ip: q.get('ip')! } : {}),
    });
    sendIssued(x, `${this.d.publicBase}/${issued.pathAndQuery}`, issued, 'gateway');
  }

  /** `POST [base]/_file/{type}/{id}/upload?sp=w&spath=…&sig=…`, verified by the flow: `$binary-access-write` for the URL's attachment. */
  async followWrite(x: Exchange, v: VerifiedUrl): Promise<void> {
    if (v.type === 'Binary') throw new GatewayError('BAD_REQUEST', 'write URLs for Binary are not supported');
    // The holder is nobody the gateway checked: of their headers only what an upload needs goes
    // on (no Authorization, cookies, Prefer, X-Provenance…), as a token-less request.
    for (const name of Object.keys(x.req.headers)) if (!UPLOAD_HEADERS.has(name)) delete x.req.headers[name];
    x.req.headers['if-match'] = `W/"${v.fields.svid!}"`;
    const write = contentWriteOf(v.type, v.id, v.fields.spath!);
    // Under the smallest limits of every rule for writing the content: a chunked body (no declared
    // size to check up front) is counted against the strictest as it streams.
    const policy = x.settings.policy;
    const rule = policy.strictest(
      policy.ruleFor(write),
      contentWriteRulesOf(x.settings, v.type, v.id).map((r) => ({ type: v.type, rule: r })),
    );
    // The answer (the updated resource) is the issuer's to read, not the URL holder's: withheld.
    await this.access.write(
      new Exchange(x.req, x.res, x.ctx, write, rule, x.principal, { ...x.rewrite, withhold: true, bare: true }, x.settings),
    );
  }

  private signer(x: Exchange): UrlSigner {
    const signer = x.settings.signer;
    if (!signer) throw new GatewayError('NOT_FOUND', 'signed file URLs are not enabled (signedUrls.enabled)');
    return signer;
  }
}

/**
 * Cache-Control of a store URL's answer, fixed when the URL is made (the store serves it as
 * signed): the operator's `content.cacheControl`, its max-age no longer than the window.
 */
function storeCacheControl(configured: string, windowMs: number): string {
  const m = /^private, max-age=(\d+)$/.exec(configured);
  return m ? `private, max-age=${Math.min(Number(m[1]), Math.floor(windowMs / 1000))}` : 'no-store';
}

const GAP_NAMES: Readonly<Record<StoreUrlGap, string>> = {
  ip: 'a client address (ip: asked for, or a rule for reading this content limits client addresses)',
  withdraw: 'withdrawal (withdraw: a quarantine or delete does not reach a URL the store already signed)',
  policy: 'revocation by stored policy (policy)',
  https: 'HTTPS only (a rule for reading this content requires https)',
};

/** `$file-url`'s answer: a Parameters resource; the answer is a credential, never kept by a cache. */
function sendIssued(
  x: Exchange,
  url: string,
  issued: { readonly startsAt: Date; readonly expiresAt: Date; readonly policy: string | undefined; readonly keyId?: string | undefined },
  via: string,
): void {
  const body = JSON.stringify({
    resourceType: 'Parameters',
    parameter: [
      { name: 'url', valueUrl: url },
      { name: 'expiresAt', valueInstant: issued.expiresAt.toISOString() },
      { name: 'startsAt', valueInstant: issued.startsAt.toISOString() },
      ...(issued.policy ? [{ name: 'policy', valueString: issued.policy }] : []),
      ...(issued.keyId ? [{ name: 'keyId', valueString: issued.keyId }] : []),
      { name: 'via', valueCode: via },
    ],
  });
  x.res.writeHead(200, {
    'content-type': FHIR_JSON,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': x.ctx.id,
  });
  x.res.end(body);
}

/** `$binary-access-write` of one attachment: what a write URL stands for. */
export function contentWriteOf(type: string, id: string, path: string): Interaction {
  return {
    kind: 'operation',
    operation: 'binary-access-write',
    resourceType: type,
    id,
    method: 'POST',
    path: `${type}/${id}/$binary-access-write`,
    query: `path=${encodeURIComponent(path)}`,
  };
}

/**
 * The rules for writing a resource's content: `$binary-access-write`'s, `$file-url`'s, and the
 * type's read rules, which hold for `$binary-access-write` with a token too (its answer is the
 * resource: security/reach.ts ownReadRules). As for reading (contentRulesOf), a write URL is
 * issued only to a caller all of them admit and followed only under all their network conditions.
 */
export function contentWriteRulesOf(settings: Settings, type: string, id: string): readonly EffectiveRule[] {
  const fileUrl: Interaction = { ...contentReadOf(type, id), operation: 'file-url', path: `${type}/${id}/$file-url` };
  return [
    ...new Set([
      settings.policy.ruleFor(contentWriteOf(type, id, '')),
      settings.policy.ruleFor(fileUrl),
      ...settings.policy.readRulesOf(type),
    ]),
  ];
}

/** Content-Disposition the URL pins: `attachment` (the default), or `inline` for content that cannot run as a page. */
function disposition(kind: string | null, filename: string | null, contentType: string | undefined): string {
  if (kind !== null && kind !== 'attachment' && kind !== 'inline')
    throw new GatewayError('BAD_REQUEST', "'disposition' is attachment or inline");
  if (filename !== null && !isDownloadName(filename)) throw new GatewayError('BAD_REQUEST', downloadNameRule("'filename'"));
  const inline = kind === 'inline' && contentType !== undefined && !isActiveContent(contentType);
  return contentDisposition(inline ? 'inline' : 'attachment', filename ?? undefined);
}
