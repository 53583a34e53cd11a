import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import type { GatewayConfig } from '../config/types.js';
import { allowed, essence } from '../content/media-type.js';
import { GatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import type { EffectiveRule } from '../security/policy.js';
import { parseAttachmentPath, resolveAttachment } from './attachment-path.js';
import { FHIR_JSON, type ContentIo, type FetchedAttachment } from './content-io.js';
import { etagMatches } from './range.js';
import { BLOB_EXTENSION_URL, blobExtension, findBlobRef } from './reference.js';
import { securityContextOf, type Caller, type SecurityContextGuard } from './security-context.js';

const MEDIA_CONTENT = [{ name: 'content', index: undefined }] as const;
const FHIR_FORMAT = /^application\/(fhir\+json|json\+fhir|fhir\+xml|xml\+fhir)$/;
/** Accept values that ask for a document about the content, never the content itself. */
const NOT_RAW = /^(application\/(fhir\+json|json\+fhir|fhir\+xml|xml\+fhir|json|xml)|text\/(html|xml))$/;

/**
 * `$binary-access-read` / `$binary-access-write` on any resource with Attachments (and Binary),
 * and raw Media (`_output=data`, or an Accept equal to the content's type). The attachment keeps
 * a stable reference; the bytes live in the store and are checked like every upload.
 */
export class BinaryAccess {
  constructor(
    private readonly io: ContentIo,
    private readonly guard: SecurityContextGuard,
    private readonly config: () => GatewayConfig,
  ) {}

  static owns(i: Interaction, accept: string | undefined): boolean {
    if (i.interaction === 'operation') return i.operation === 'binary-access-read' || i.operation === 'binary-access-write';
    if (i.resourceType !== 'Media' || (i.interaction !== 'read' && i.interaction !== 'vread') || i.conditional) return false;
    if (new URLSearchParams(i.query).get('_output') === 'data') return true;
    return rawAccept(accept) !== undefined;
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    proceed: () => void,
  ): Promise<void> {
    if (i.interaction !== 'operation') {
      proceed();
      return this.rawMedia(req, res, ctx, rule, i);
    }
    if (!i.resourceType || !i.id)
      throw new GatewayError('BAD_REQUEST', `$${i.operation} works on a resource instance, e.g. DocumentReference/123/$${i.operation}`);
    const steps = parseAttachmentPath(new URLSearchParams(i.query).get('path'), i.resourceType);
    if (i.operation === 'binary-access-read') {
      if (req.method !== 'GET' && req.method !== 'HEAD')
        throw new GatewayError('METHOD_NOT_ALLOWED', '$binary-access-read is a GET', { headers: { allow: 'GET, HEAD' } });
      proceed();
      const path = `/${i.resourceType}/${i.id}${i.versionId ? `/_history/${i.versionId}` : ''}`;
      return this.read(req, res, ctx, rule, i, caller, path, steps);
    }
    if (req.method !== 'POST')
      throw new GatewayError('METHOD_NOT_ALLOWED', '$binary-access-write is a POST', { headers: { allow: 'POST' } });
    if (i.versionId)
      throw new GatewayError(
        'BAD_REQUEST',
        '$binary-access-write writes the current version; use If-Match to name the version it replaces',
      );
    return this.write(req, res, ctx, rule, i.resourceType, i.id, steps, caller, proceed);
  }

  private async read(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    path: string,
    steps: ReturnType<typeof parseAttachmentPath>,
  ): Promise<void> {
    const got = await this.io.fetchAttachment(req, ctx, rule, path, i.resourceType === 'Binary' ? 'binary' : steps, this.spoolDir());
    if ('relay' in got) {
      this.io.relay(req, got.relay, res, ctx);
      return;
    }
    try {
      if (got.resource.resourceType === 'Binary') await this.guard.binaryRead(req, ctx, rule, i, caller, got.resource);
      if (!got.attachment) throw new GatewayError('NOT_FOUND', 'no attachment at that path');
      await this.serveAttachment(req, res, ctx, got);
    } finally {
      await got.release();
    }
  }

  private spoolDir(): string {
    return this.config().server.spoolDir ?? tmpdir();
  }

  /** Serves an attachment's content raw, from the store or from inline data the upstream holds. */
  private async serveAttachment(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, got: FetchedAttachment): Promise<void> {
    const attachment = got.attachment!;
    const ref = findBlobRef((attachment['_data'] as { extension?: unknown } | undefined)?.extension);
    const inline = ref ? undefined : got.inline;
    if (!ref && !inline) throw new GatewayError('NOT_FOUND', 'the attachment has no content here (only a url, or nothing)');
    const info = ref ? await this.io.blobFor(ref, `${String(got.resource.resourceType)}/${String(got.resource.id)}`) : undefined;
    const contentType =
      essence(typeof attachment['contentType'] === 'string' ? attachment['contentType'] : undefined) ??
      info?.contentType ??
      'application/octet-stream';
    const headers = this.io.versionHeaders(got.resource, ctx);
    if (typeof headers['etag'] === 'string' && etagMatches(req.headers['if-none-match'], headers['etag'])) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    if (ref) await this.io.serveRaw(req, res, headers, { contentType, size: info!.size, ref });
    else if (inline && 'bytes' in inline)
      await this.io.serveRaw(req, res, headers, { contentType, size: inline.bytes.length, inline: inline.bytes });
    else if (inline) await this.io.serveRaw(req, res, headers, { contentType, size: inline.size, file: inline.file });
  }

  private async write(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    type: string,
    id: string,
    steps: ReturnType<typeof parseAttachmentPath>,
    caller: Caller,
    proceed: () => void,
  ): Promise<void> {
    const declared = essence(req.headers['content-type']);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'Content-Type is required: the content’s own type');
    if (FHIR_FORMAT.test(declared)) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        '$binary-access-write takes the content itself with its own Content-Type, not a FHIR resource',
      );
    }
    const allowedTypes = this.config().content.allowedTypes;
    if (!allowed(declared, allowedTypes[type] ?? allowedTypes['Binary'] ?? []))
      throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for ${type}`);

    // Everything that can refuse the write is decided before the body is read (and before 100-continue).
    const got = await this.io.fetchResource(req, ctx, rule, `/${type}/${id}`);
    if ('relay' in got) {
      this.io.relay(req, got.relay, res, ctx);
      return;
    }
    const resource = got.resource;
    const version = typeof resource.meta?.versionId === 'string' ? resource.meta.versionId : undefined;
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && (version === undefined || !etagMatches(ifMatch, `W/"${version}"`))) {
      throw new GatewayError('PRECONDITION_FAILED', `the current version is ${version ?? 'unknown'}`);
    }
    // Replacing a Binary's content needs the right to read what governs it.
    const sc = type === 'Binary' ? securityContextOf(resource, 'write') : undefined;
    if (sc !== undefined) await this.guard.require(req, ctx, rule, caller, sc);
    const attachment = resolveAttachment(resource, steps);
    if (!attachment)
      throw new GatewayError(
        'BAD_REQUEST',
        'no attachment at that path: create the element first (e.g. with its contentType), then write its content',
      );
    proceed();

    const info = await this.io.storeBody(req, res, declared, rule.limits.maxRequestBytes);
    if (!info) return;
    const binary = attachment === resource;
    attachment['contentType'] = declared;
    delete attachment['data'];
    // A url would name other content than the one just written.
    if (!binary) delete attachment['url'];
    if (!binary) {
      attachment['size'] = info.size;
      attachment['hash'] = info.sha1;
    }
    const element = (attachment['_data'] && typeof attachment['_data'] === 'object' ? attachment['_data'] : {}) as { extension?: unknown };
    const others = Array.isArray(element.extension)
      ? element.extension.filter((e: { url?: unknown }) => e?.url !== BLOB_EXTENSION_URL)
      : [];
    attachment['_data'] = { ...element, extension: [...others, blobExtension({ id: info.id, sha256: info.sha256 })] };

    const body = Buffer.from(JSON.stringify(resource));
    // Conditional on the version we read: a change in between makes the upstream refuse, and the blob goes.
    const conditional: Record<string, string> = version ? { 'if-match': `W/"${version}"` } : {};
    const up = await this.io.commit(
      req,
      ctx,
      rule,
      'PUT',
      `/${type}/${id}`,
      conditional,
      [{ id: info.id, contentType: declared }],
      body,
      body.length,
      () => `${type}/${id}`,
    );
    this.io.relay(req, up, res, ctx);
  }

  /** GET Media/{id} asking for the content itself: served raw; otherwise the resource, as FHIR. */
  private async rawMedia(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
  ): Promise<void> {
    const got = await this.io.fetchAttachment(req, ctx, rule, `/${i.path}`, MEDIA_CONTENT, this.spoolDir());
    if ('relay' in got) {
      this.io.relay(req, got.relay, res, ctx);
      return;
    }
    try {
      const content = got.attachment;
      const contentType = essence(typeof content?.['contentType'] === 'string' ? content['contentType'] : undefined);
      const wanted =
        new URLSearchParams(i.query).get('_output') === 'data' ||
        (contentType !== undefined && rawAccept(req.headers.accept) === contentType);
      if (wanted && content) {
        await this.serveAttachment(req, res, ctx, got);
        return;
      }
      // The client named a type the content is not: it gets the resource, as FHIR would answer.
      if (!got.whole) {
        // Only the content was kept of a large resource: the resource itself is fetched again and relayed as it comes.
        const again = await this.io.fetchRaw(req, ctx, rule, `/${i.path}`);
        this.io.relay(req, again, res, ctx);
        return;
      }
      const body = Buffer.from(JSON.stringify(got.resource));
      const headers = { ...this.io.versionHeaders(got.resource, ctx), 'content-type': FHIR_JSON, vary: 'Accept' };
      if (req.method === 'HEAD' || !ctx.rewrite) {
        res.writeHead(200, { ...headers, 'content-length': body.length });
        res.end(req.method === 'HEAD' ? undefined : body);
        return;
      }
      // The resource as FHIR: its attachments inflated or linked like any other read.
      await this.io.responses.sendBuffer(body, res, 200, headers, ctx, ctx.rewrite);
    } finally {
      await got.release();
    }
  }
}

/** The Accept of a client asking for content as itself: one concrete media type that is not a FHIR or generic document format. */
function rawAccept(accept: string | undefined): string | undefined {
  if (!accept || accept.includes(',')) return undefined;
  const a = essence(accept);
  if (!a || a.includes('*') || NOT_RAW.test(a)) return undefined;
  return a;
}
