import type { BlobLifecycle } from '../binary/blob-lifecycle.js';
import { overridable } from '../content/override-guard.js';
import { allowed, canonical, essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { storeFailure } from '../errors/map.js';
import type { Interaction } from '../fhir/interaction.js';
import { isResourceType, RELATIVE_REFERENCE } from '../fhir/resource-types.js';
import { noteUrlGrant } from '../lib/blob-events.js';
import { contentDisposition, downloadNameRule, isDownloadName } from '../lib/download-name.js';
import { parseDuration } from '../lib/duration.js';
import { parseSpan } from '../lib/ip.js';
import { checkRule } from '../security/reach.js';
import { grantsCreateOf, missingScopes } from '../security/scopes.js';
import type { Exchange } from '../security/exchange.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import { uploadPurpose } from '../binary/file-metadata.js';
import { contentRulesOf, type FileUrls } from '../binary/file-urls.js';
import type { FilePart } from './multipart.js';
import type { UploadRef } from './schema.js';

/** What a resolver works with: the request's exchange and its file parts. */
export interface FilesContext {
  readonly x: Exchange;
  /** The file parts of a multipart request; undefined for a JSON one (which carries none). */
  take(ref: UploadRef): Promise<FilePart>;
}

export interface FilesDeps {
  readonly store: BlobStore;
  /** Stores an upload through the content check (the one path every stored byte takes). */
  readonly blobs: Pick<BlobLifecycle, 'upload'>;
  /** Read URLs for a bound file, named by the resource that holds it. */
  readonly urls: Pick<FileUrls, 'readUrl'>;
  /** The public FHIR base: signed URLs start with it. */
  readonly publicBase: string;
  /** Whether the store encrypts what it keeps (`encryption: AES256` is honoured, not refused). */
  readonly encryptsAtRest: boolean;
}

/** `storagePath`: how a resource written through this API names an uploaded file. */
export const STORAGE_PATH_PREFIX = 'urn:fhir-binary-gateway:file:';

/** The interaction an upload is authorized as: creating content for `target` (DocumentReference or Media). */
export function uploadInteraction(target: string): Interaction {
  return {
    kind: 'operation',
    operation: 'gateway-upload',
    resourceType: target,
    method: 'POST',
    path: `${target}/$gateway-upload`,
    query: '',
  };
}

/**
 * The resource type a file of `contentType` binds to (seed 000's binding constraints): audio,
 * video and DICOM to Media, everything else to DocumentReference.
 */
export function targetTypeOf(contentType: string): 'DocumentReference' | 'Media' {
  return /^(audio|video)\//.test(contentType) || canonical(contentType) === 'application/dicom' ? 'Media' : 'DocumentReference';
}

/** Who a file belongs to: the token's issuer and subject. */
export function uploaderOf(x: Exchange): string {
  const claims = x.principal.token?.claims ?? {};
  const sub = typeof claims['sub'] === 'string' ? claims['sub'] : undefined;
  // A client's own token (no subject) would make every user of that client one uploader.
  if (sub === undefined || sub.trim() === '')
    throw new GatewayError('INSUFFICIENT_SCOPE', 'files need a token that names its subject (a non-empty sub)');
  return `${typeof claims['iss'] === 'string' ? claims['iss'] : ''}#${sub}`.slice(0, 512);
}

interface UploadArgs {
  readonly forEntity: string;
  readonly data: UploadRef;
  readonly filename?: string | null;
  readonly contentType: string;
  readonly security?: { encryption?: string | null; accessWindow?: string | null; allowedIps?: readonly string[] | null } | null;
  readonly fileTypeOverride?: string | null;
}

/** The resolvers of the files API (docs/graphql.md). */
export class FilesApi {
  constructor(private readonly d: FilesDeps) {}

  /** `uploadFile`: the file streamed through the content check into the store, pending until a resource binds it. */
  async uploadFile(args: UploadArgs, c: FilesContext): Promise<Record<string, unknown>> {
    const { x } = c;
    const entity = args.forEntity;
    if (!RELATIVE_REFERENCE.test(entity) || !isResourceType(entity.split('/')[0]))
      throw new GatewayError('BAD_REQUEST', "forEntity is a resource reference like 'Patient/123'");
    const declared = essence(args.contentType);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'contentType is a media type like application/pdf');
    // A privileged caller may take a type past the allow-list, never to executable or active content.
    const override = args.fileTypeOverride == null ? undefined : essence(args.fileTypeOverride);
    if (args.fileTypeOverride != null) {
      const needs = x.settings.config.graphql.overrideScope;
      if (!x.principal.scopes || missingScopes(x.principal.scopes, [needs]).length > 0)
        throw new GatewayError('INSUFFICIENT_SCOPE', `fileTypeOverride needs the scope ${needs}`);
      if (override === undefined || !overridable(override))
        throw new GatewayError(
          'UNSUPPORTED_MEDIA',
          'fileTypeOverride takes a media type, never an executable or active one (HTML, SVG, scripts) nor octet-stream',
        );
    }
    const type = override ?? declared;
    const target = targetTypeOf(type);
    const interaction = uploadInteraction(target);
    const rule = x.settings.policy.ruleFor(interaction);
    // The upload's rule (transport, addresses, declared size, token, named scopes), then SMART:
    // creating the target type, in any context — a patient's token for its own patient only (below).
    checkRule({ ...x.checkInput(), interaction }, x.settings, rule);
    if (rule.require.smart && !(x.principal.scopes && grantsCreateOf(x.principal.scopes, target, x.principal.patient)))
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        `uploading ${declared} files needs an unrestricted create scope on ${target} (user/${target}.c, or patient/${target}.c with a launch patient)`,
      );
    const scope = x.settings.config.graphql.uploadScope;
    if (!x.principal.scopes || missingScopes(x.principal.scopes, [scope]).length > 0)
      throw new GatewayError('INSUFFICIENT_SCOPE', `uploading needs the scope ${scope}`);
    // A patient's token uploads for that patient only.
    if (x.principal.patient !== undefined && entity !== `Patient/${x.principal.patient}`)
      throw new GatewayError('INSUFFICIENT_SCOPE', "a patient's token uploads files for that patient only");
    if (override === undefined && !allowed(declared, x.settings.policy.allowedTypes(target)))
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        `${declared} is not allowed for ${target} (content.allowedTypes.${target})${
          overridable(declared) ? `: a caller with ${x.settings.config.graphql.overrideScope} may use fileTypeOverride` : ''
        }`,
      );
    const sec = args.security ?? {};
    if (sec.encryption === 'AES256' && !this.d.encryptsAtRest)
      throw new GatewayError(
        'BAD_REQUEST',
        'encryption AES256 was asked for, but this store does not encrypt at rest (storage.filesystem.encryption)',
      );
    const windowMs = sec.accessWindow == null ? undefined : parseDuration(sec.accessWindow);
    if (sec.accessWindow != null && windowMs === undefined) throw new GatewayError('BAD_REQUEST', 'accessWindow is a duration like 15m');
    const ips = sec.allowedIps ?? [];
    if (ips.length > 1) throw new GatewayError('BAD_REQUEST', 'allowedIps takes one address or range (a signed URL carries one)');
    if (ips[0] !== undefined && !parseSpan(ips[0]))
      throw new GatewayError('BAD_REQUEST', `'${ips[0].slice(0, 64)}' is not an address or range`);
    if (args.filename != null && !isDownloadName(args.filename)) throw new GatewayError('BAD_REQUEST', downloadNameRule('filename'));
    // Refused before the file is read (X-File-Metadata; BlobLifecycle tags the blob with it).
    uploadPurpose(x.req.headers, x.settings.config.content.purposes);
    const by = uploaderOf(x);

    const part = await c.take(args.data);
    let info: BlobInfo | undefined;
    try {
      info = await this.d.blobs.upload(x, type, {
        body: part.stream,
        rule,
        upload: {
          by,
          for: entity,
          ...(override ? { override: true as const } : {}),
          ...(args.filename != null ? { filename: args.filename } : {}),
          ...(ips[0] !== undefined ? { ip: ips[0] } : {}),
        },
      });
    } catch (err) {
      // The part's stream is drained so the multipart parser moves on; the answer closes the connection (api.ts).
      part.stream.resume();
      throw err;
    }
    // The client went away mid-file: the store removed what it wrote, and nobody reads the answer.
    if (!info) throw new GatewayError('BAD_REQUEST', 'the upload was cut off');
    const url = this.url(x, info, entity, windowMs, ips[0], args.filename ?? undefined);
    return {
      fileId: info.id,
      storagePath: `${STORAGE_PATH_PREFIX}${info.id}`,
      hashSha256: info.sha256,
      size: info.size,
      contentType: info.contentType,
      url: url?.url ?? null,
      sasToken: url?.sasToken ?? null,
      expiresAt: url?.expiresAt ?? null,
    };
  }

  /** `file`: what the store says of a file this caller uploaded. */
  async file(args: { fileId: string }, c: FilesContext): Promise<Record<string, unknown> | null> {
    const info = await this.own(args.fileId, c.x);
    if (!info) return null;
    return {
      fileId: info.id,
      size: info.size,
      contentType: info.contentType,
      hashSha256: info.sha256,
      purpose: info.purpose ?? null,
      state: info.state.toUpperCase(),
      forEntity: info.upload?.for ?? null,
      linkedTo: info.state === 'linked' ? (info.owner ?? null) : null,
      createdAt: info.createdAt,
    };
  }

  /**
   * `refreshFileUrl`: a new URL for a file this caller uploaded. Unbound, it is named by the entity
   * it was uploaded for; bound, by the resource that holds it, issued as `$file-url` on that
   * resource would (FileUrls.readUrl): the caller's right to read it is checked again either way.
   */
  async refreshFileUrl(args: { fileId: string; accessWindow?: string | null }, c: FilesContext): Promise<Record<string, unknown>> {
    const info = await this.own(args.fileId, c.x);
    if (!info?.upload) throw new GatewayError('NOT_FOUND', 'no file of yours with that id');
    const windowMs = args.accessWindow == null ? undefined : parseDuration(args.accessWindow);
    if (args.accessWindow != null && windowMs === undefined) throw new GatewayError('BAD_REQUEST', 'accessWindow is a duration like 15m');
    if (info.state === 'linked' && info.owner !== undefined) {
      const { url, expiresAt } = await this.d.urls.readUrl(c.x, info.owner, info.id, windowMs, info.upload);
      return { url, sasToken: url.slice(url.indexOf('?') + 1), expiresAt: expiresAt.toISOString() };
    }
    if (info.state !== 'pending') throw new GatewayError('NOT_FOUND', `the file is ${info.state}: no URL is issued for it`);
    const [type, id] = info.upload.for.split('/');
    // The caller's right to read is checked again, as at upload: the rules for reading the entity's content.
    for (const rule of contentRulesOf(c.x.settings, type, id)) checkRule(c.x.checkInput(), c.x.settings, rule);
    // The address and the name the upload asked for hold for every URL of the file.
    const url = this.url(c.x, info, info.upload.for, windowMs, info.upload.ip, info.upload.filename);
    if (!url) throw new GatewayError('NOT_FOUND', 'signed file URLs are not enabled (signedUrls.enabled)');
    return url;
  }

  /** A file this caller uploaded (by id), else undefined: another caller's file is as absent as a missing one. */
  private async own(fileId: string, x: Exchange): Promise<BlobInfo | undefined> {
    if (!/^[a-z0-9-]{1,64}$/.test(fileId)) return undefined;
    const scope = x.settings.config.graphql.uploadScope;
    if (!x.principal.scopes || missingScopes(x.principal.scopes, [scope]).length > 0)
      throw new GatewayError('INSUFFICIENT_SCOPE', `files are read here with the scope ${scope}`);
    let info: BlobInfo | undefined;
    try {
      info = await this.d.store.head(fileId);
    } catch (err) {
      throw storeFailure(err);
    }
    return info?.upload?.by === uploaderOf(x) ? info : undefined;
  }

  /** A signed read URL for an unbound upload, named by the entity it is for. */
  private url(
    x: Exchange,
    info: BlobInfo,
    entity: string,
    windowMs: number | undefined,
    sip: string | undefined,
    filename: string | undefined,
  ): { url: string; sasToken: string; expiresAt: string } | undefined {
    const signer = x.settings.signer;
    if (!signer) return undefined;
    const [type, id] = entity.split('/');
    const https = contentRulesOf(x.settings, type, id).some((r) => r.require.https);
    const issued = signer.issue({
      type: type,
      id: id,
      blobId: info.id,
      sha256: info.sha256,
      permissions: 'r',
      windowMs,
      sip,
      httpAllowed: !https,
      contentType: info.contentType,
      disposition: contentDisposition('attachment', filename || undefined),
    });
    noteUrlGrant(x.ctx, {
      url: issued.urlId,
      resource: entity,
      blob: info.id,
      permission: 'r',
      expiresAt: issued.expiresAt.toISOString(),
      via: 'gateway',
      ...(issued.policy ? { policy: issued.policy } : {}),
      ...(sip ? { ip: sip } : {}),
    });
    const url = `${this.d.publicBase}/${issued.pathAndQuery}`;
    return { url, sasToken: url.slice(url.indexOf('?') + 1), expiresAt: issued.expiresAt.toISOString() };
  }
}
