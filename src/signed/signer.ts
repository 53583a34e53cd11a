import { GatewayError } from '../errors/catalogue.js';
import { FILE_SEGMENT } from '../fhir/content-link.js';
import { isResourceType } from '../fhir/resource-types.js';
import { isBlobId } from '../lib/blob-id.js';
import { inSpan, parseSpan, type Address } from '../lib/ip.js';
import type { GatewayConfig } from '../config/types.js';
import { parseDuration } from '../lib/duration.js';
import {
  parseSigned,
  signature,
  signedQuery,
  SIGNED_VERSION,
  shashOf,
  sha256OfShash,
  urlIdOf,
  verifySignature,
  type Permissions,
  type SignedFields,
} from './signature.js';

export type SignedUrlsConfig = GatewayConfig['signedUrls'];

/** A write URL's last segment: `_file/{type}/{id}/upload`. */
export const UPLOAD_SEGMENT = 'upload';
const RESOURCE_ID = /^[A-Za-z0-9\-.]{1,64}$/;

interface Policy {
  readonly id: string;
  readonly permissions: Permissions;
  readonly maxWindowMs: number;
  readonly notAfterMs: number | undefined;
}

/** What a URL is asked for (by `$file-url`, after the caller's right to read was checked). */
export interface IssueRequest {
  readonly type: string;
  readonly id: string;
  readonly blobId: string;
  /** Read URLs: the content's SHA-256 (lowercase hex), as the resource holds it. */
  readonly sha256?: string | undefined;
  readonly permissions: Permissions;
  /** The window asked for; the default window when absent. Capped by the policy's and the gateway's maximum. */
  readonly windowMs?: number | undefined;
  /** The stored policy asked for; the default policy when absent. */
  readonly policy?: string | undefined;
  readonly sip?: string | undefined;
  /** Whether plain http may follow it (only where the rule for reading the content lets http in). */
  readonly httpAllowed: boolean;
  readonly contentType?: string | undefined;
  readonly disposition?: string | undefined;
  /** Write URLs: the attachment they replace the content of (the path of `$binary-access-write`). */
  readonly attachmentPath?: string | undefined;
  /** Write URLs: the resource version they are for. */
  readonly versionId?: string | undefined;
}

export interface Issued {
  /** The URL's path and query below the FHIR base, e.g. `_file/Binary/1/ab12…?sv=…`. */
  readonly pathAndQuery: string;
  readonly startsAt: Date;
  readonly expiresAt: Date;
  readonly policy: string | undefined;
  readonly keyId: string;
  /** Its name in the audit trail (urlIdOf). */
  readonly urlId: string;
}

/** A URL that verified: what it names and grants. */
export interface VerifiedUrl {
  readonly type: string;
  readonly id: string;
  /** The blob a read URL names; `upload` for a write URL. */
  readonly blobId: string;
  /** A read URL's content (lowercase hex SHA-256): the blob served must have it. */
  readonly sha256: string | undefined;
  readonly fields: SignedFields;
  readonly expiresAtMs: number;
  /** Its name in the audit trail (urlIdOf): the same as at its issue. */
  readonly urlId: string;
}

export interface FollowContext {
  readonly method: string;
  readonly clientIp: Address;
  readonly secure: boolean;
  /** Told once the signature verified, before the other checks: which URL this is (for the audit trail). */
  readonly signed?: (urlId: string, fields: SignedFields) => void;
}

/** `2026-12-06T10:00:00Z`: whole seconds, the form `st` and `se` carry. */
function signedTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Issues and verifies signed file URLs (docs/signed-urls.md): HMAC-SHA256 under one of several
 * keys, each URL naming its key; stored access policies that revoke every URL under them when
 * removed or expired. Built with each configuration (reload rebuilds it, re-reading the keys).
 */
export class UrlSigner {
  private readonly policies: ReadonlyMap<string, Policy>;
  private readonly defaultWindowMs: number;
  private readonly maxWindowMs: number;
  private readonly bucketMs: number;
  private readonly skewMs: number;

  constructor(
    private readonly config: SignedUrlsConfig,
    private readonly keys: ReadonlyMap<string, Buffer>,
  ) {
    this.defaultWindowMs = parseDuration(config.defaultWindow)!;
    this.maxWindowMs = parseDuration(config.maxWindow)!;
    this.bucketMs = parseDuration(config.bucket)!;
    this.skewMs = parseDuration(config.clockSkew)!;
    this.policies = new Map(
      config.policies.map((p) => [
        p.id,
        {
          id: p.id,
          permissions: p.permissions,
          maxWindowMs: parseDuration(p.maxWindow)!,
          notAfterMs: p.notAfter === undefined ? undefined : Date.parse(p.notAfter),
        },
      ]),
    );
  }

  /**
   * The window a URL gets and the policy it is under, for the gateway's URLs and a store's alike:
   * the window asked for within the policy's and the gateway's maximum, the start rounded down to
   * the bucket (at most a quarter of the window, whole seconds) so the same request within a
   * bucket is the same URL, which stays valid at least ¾ of the window.
   */
  plan(
    r: Pick<IssueRequest, 'permissions' | 'windowMs' | 'policy'>,
    now = Date.now(),
  ): { readonly start: number; readonly end: number; readonly policy: string | undefined } {
    const policyId = r.policy ?? this.config.defaultPolicy;
    const policy = policyId === undefined ? undefined : this.policies.get(policyId);
    if (policyId !== undefined && !policy) throw new GatewayError('BAD_REQUEST', `no stored access policy '${policyId.slice(0, 64)}'`);
    if (policy?.notAfterMs !== undefined && now >= policy.notAfterMs)
      throw new GatewayError('SIGNATURE_REVOKED', `policy '${policy.id}' ended at ${new Date(policy.notAfterMs).toISOString()}`);
    if (policy && !grants(policy.permissions, r.permissions))
      throw new GatewayError('SIGNATURE_REVOKED', `policy '${policy.id}' does not grant '${r.permissions}'`);
    // Writing is opted into per policy: a write URL is always signed under one that grants `w` (and so can be revoked alone).
    if (!policy && r.permissions.includes('w'))
      throw new GatewayError(
        'BAD_REQUEST',
        'write URLs are signed only under a stored policy that grants w (signedUrls.policies; name it with policy=)',
      );
    const window = Math.min(r.windowMs ?? this.defaultWindowMs, this.maxWindowMs, policy?.maxWindowMs ?? Infinity);
    const bucket = Math.max(1_000, Math.min(this.bucketMs, Math.floor(window / 4 / 1_000) * 1_000));
    const start = Math.floor(now / bucket) * bucket;
    let end = Math.floor((start + window) / 1_000) * 1_000;
    if (policy?.notAfterMs !== undefined) end = Math.min(end, Math.floor(policy.notAfterMs / 1_000) * 1_000);
    return { start, end, policy: policy?.id };
  }

  issue(r: IssueRequest, now = Date.now()): Issued {
    const keyId = this.config.activeKey!;
    const key = this.keys.get(keyId)!;
    if (r.sip !== undefined && !parseSpan(r.sip))
      throw new GatewayError('BAD_REQUEST', `'${r.sip.slice(0, 64)}' is not an address or range`);
    // A read URL names its content by hash (shash): without one it could not be checked at follow.
    if (r.permissions !== 'w' && (r.sha256 === undefined || !/^[0-9a-f]{64}$/.test(r.sha256)))
      throw new Error('a read URL needs its content SHA-256');
    const { start, end, policy } = this.plan(r, now);
    const fields: SignedFields = {
      path: `${FILE_SEGMENT}/${r.type}/${r.id}/${r.permissions === 'w' ? UPLOAD_SEGMENT : r.blobId}`,
      sv: SIGNED_VERSION,
      sr: 'b',
      sp: r.permissions,
      st: signedTime(start),
      se: signedTime(end),
      sip: r.sip,
      spr: r.httpAllowed ? 'https,http' : 'https',
      si: policy,
      rsct: r.contentType,
      rscd: r.disposition,
      skid: keyId,
      shash: r.permissions === 'w' ? undefined : shashOf(r.sha256!),
      spath: r.permissions === 'w' ? r.attachmentPath : undefined,
      svid: r.permissions === 'w' ? r.versionId : undefined,
    };
    const sig = signature(fields, key);
    return {
      pathAndQuery: `${fields.path}?${signedQuery(fields, sig)}`,
      startsAt: new Date(start),
      expiresAt: new Date(end),
      policy,
      keyId,
      urlId: urlIdOf(sig),
    };
  }

  /**
   * Verifies a URL as it is followed. The signature first (nothing else is told of a URL that
   * does not verify), then its policy, its times, the transport, the address, the method.
   */
  verify(path: string, query: string, c: FollowContext, now = Date.now()): VerifiedUrl {
    const { fields, sig } = parseSigned(path, query);
    verifySignature(fields, sig, this.keys);
    // Ours from here on: a refusal below (expired, revoked, another address) is still of this URL.
    c.signed?.(urlIdOf(sig), fields);
    const [segment, type, id, blobId, ...rest] = path.split('/');
    // Signed by us, so made by us; checked anyway, as everything taken from a URL is.
    // A read URL names a blob; a write URL (`sp=w`) the upload slot of one attachment (`spath`).
    const named =
      fields.sp === 'w'
        ? blobId === UPLOAD_SEGMENT && fields.spath !== undefined && fields.svid !== undefined
        : blobId !== undefined && isBlobId(blobId) && fields.spath === undefined && fields.svid === undefined;
    if (segment !== FILE_SEGMENT || rest.length > 0 || !type || !isResourceType(type) || !id || !RESOURCE_ID.test(id) || !blobId || !named)
      throw new GatewayError('SIGNATURE_INVALID', 'the path names no stored content');
    const st = Date.parse(fields.st);
    const se = Date.parse(fields.se);
    this.checkPolicy(fields, se - st, now);
    if (now + this.skewMs < st) throw new GatewayError('SIGNATURE_NOT_YET_VALID', `valid from ${fields.st}`);
    if (now - this.skewMs >= se)
      throw new GatewayError(
        'SIGNATURE_EXPIRED',
        `it expired at ${fields.se} (ask for a new one: $file-url, or refreshFileUrl for a GraphQL upload)`,
      );
    if (fields.spr === 'https' && !c.secure) throw new GatewayError('INSECURE_TRANSPORT', 'this signed URL is for https only');
    if (fields.sip !== undefined) {
      const span = parseSpan(fields.sip);
      if (!span || !inSpan(c.clientIp, span)) throw new GatewayError('FORBIDDEN', 'this signed URL is for another client address');
    }
    const wants = c.method === 'GET' || c.method === 'HEAD' ? 'r' : c.method === 'POST' ? 'w' : 'x';
    if (!fields.sp.includes(wants)) throw new GatewayError('SIGNATURE_PERMISSION', `it grants '${fields.sp}'`);
    return { type, id, blobId, sha256: fields.shash && sha256OfShash(fields.shash), fields, expiresAtMs: se, urlId: urlIdOf(sig) };
  }

  private checkPolicy(fields: SignedFields, windowMs: number, now: number): void {
    if (windowMs > this.maxWindowMs) throw new GatewayError('SIGNATURE_REVOKED', 'its window is longer than the gateway now allows');
    if (fields.si === undefined && fields.sp.includes('w')) throw new GatewayError('SIGNATURE_INVALID', 'a write URL names its policy');
    if (fields.si === undefined) return;
    const policy = this.policies.get(fields.si);
    if (!policy) throw new GatewayError('SIGNATURE_REVOKED', `policy '${fields.si}' no longer exists`);
    if (policy.notAfterMs !== undefined && now >= policy.notAfterMs)
      throw new GatewayError('SIGNATURE_REVOKED', `policy '${policy.id}' ended at ${new Date(policy.notAfterMs).toISOString()}`);
    if (!grants(policy.permissions, fields.sp))
      throw new GatewayError('SIGNATURE_REVOKED', `policy '${policy.id}' no longer grants '${fields.sp}'`);
    if (windowMs > policy.maxWindowMs)
      throw new GatewayError('SIGNATURE_REVOKED', `its window is longer than policy '${policy.id}' now allows`);
  }
}

function grants(held: Permissions, wanted: Permissions): boolean {
  return [...wanted].every((p) => held.includes(p));
}
