import { allowed, essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { parseAttachmentPath, resolveAttachment, type PathStep } from '../fhir/attachment-path.js';
import { BLOB_EXTENSION_URL, blobExtension, findBlobRef } from '../fhir/blob-reference.js';
import type { Interaction } from '../fhir/interaction.js';
import { etagMatches } from '../lib/range.js';
import type { Exchange } from '../security/exchange.js';
import { securityContextOf } from '../security/security-context.js';
import { FHIR_JSON } from '../upstream/client.js';
import type { PlaneDeps } from './deps.js';
import { contentCacheControl, versionHeaders } from './raw-response.js';
import type { FetchedAttachment } from './upstream-resources.js';

/** The members of an R4 Attachment (datatypes.html#Attachment), with `id` and `extension` every element has. */
const ATTACHMENT_MEMBERS: ReadonlySet<string> = new Set([
  'id',
  'extension',
  'contentType',
  'language',
  'data',
  'url',
  'size',
  'hash',
  'title',
  'creation',
]);

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
  constructor(private readonly d: PlaneDeps) {}

  /** A read of Media asking for its content itself rather than the resource. */
  static wantsRawMedia(i: Interaction, accept: string | undefined): boolean {
    if (i.resourceType !== 'Media' || (i.kind !== 'read' && i.kind !== 'vread') || i.conditional) return false;
    return new URLSearchParams(i.query).get('_output') === 'data' || rawAccept(accept) !== undefined;
  }

  /** `[type]/[id]/$binary-access-read?path=…`: the attachment's content, raw. */
  async read(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    const steps = this.steps(i);
    if (req.method !== 'GET' && req.method !== 'HEAD')
      throw new GatewayError('METHOD_NOT_ALLOWED', '$binary-access-read is a GET', { headers: { allow: 'GET, HEAD' } });
    x.continue100();
    const path = `/${i.resourceType}/${i.id}${i.versionId ? `/_history/${i.versionId}` : ''}`;
    const got = await this.d.resources.attachment(x, path, i.resourceType === 'Binary' ? 'binary' : steps);
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
      return;
    }
    try {
      if (got.resource.resourceType === 'Binary') await this.d.guard.binaryRead(x, got.resource);
      if (!got.attachment) throw new GatewayError('NOT_FOUND', 'no attachment at that path');
      await this.serveAttachment(x, got);
    } finally {
      await got.release();
    }
  }

  /** `[type]/[id]/$binary-access-write?path=…`: new content for the attachment, stored, and the resource updated to refer to it. */
  async write(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    const steps = this.steps(i);
    if (req.method !== 'POST')
      throw new GatewayError('METHOD_NOT_ALLOWED', '$binary-access-write is a POST', { headers: { allow: 'POST' } });
    if (i.versionId)
      throw new GatewayError(
        'BAD_REQUEST',
        '$binary-access-write writes the current version; use If-Match to name the version it replaces',
      );
    const type = i.resourceType!;
    const declared = essence(req.headers['content-type']);
    if (!declared) throw new GatewayError('UNSUPPORTED_MEDIA', 'Content-Type is required: the content’s own type');
    if (FHIR_FORMAT.test(declared)) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        '$binary-access-write takes the content itself with its own Content-Type, not a FHIR resource',
      );
    }
    if (!allowed(declared, x.settings.policy.allowedTypes(type)))
      throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for ${type}`);

    // Everything that can refuse the write is decided before the body is read (and before 100-continue).
    const got = await this.d.resources.resource(x, `/${type}/${i.id}`);
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
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
    if (sc !== undefined) await this.d.guard.require(x, sc);
    const attachment = resolveAttachment(resource, steps);
    if (!attachment)
      throw new GatewayError(
        'BAD_REQUEST',
        'no attachment at that path: create the element first (e.g. with its contentType), then write its content',
      );
    // Content goes into an Attachment only: an element with members no Attachment has
    // (`Observation.code`'s coding) is something else, which would come out holding content.
    if (attachment !== resource && Object.keys(attachment).some((k) => !ATTACHMENT_MEMBERS.has(k.startsWith('_') ? k.slice(1) : k))) {
      throw new GatewayError('BAD_REQUEST', 'the element at that path is not an Attachment');
    }
    x.continue100();

    const info = await this.d.blobs.upload(x, declared);
    if (!info) return;
    const binary = attachment === resource;
    attachment['contentType'] = declared;
    delete attachment['data'];
    // A url would name other content than the one just written.
    if (!binary) {
      delete attachment['url'];
      attachment['size'] = info.size;
      attachment['hash'] = info.sha1;
    }
    const element = (attachment['_data'] && typeof attachment['_data'] === 'object' ? attachment['_data'] : {}) as { extension?: unknown };
    const others = Array.isArray(element.extension)
      ? element.extension.filter((e: { url?: unknown }) => e?.url !== BLOB_EXTENSION_URL)
      : [];
    attachment['_data'] = { ...element, extension: [...others, blobExtension({ id: info.id, sha256: info.sha256 })] };

    const body = Buffer.from(JSON.stringify(resource));
    const up = await this.d.blobs.commit(x, {
      method: 'PUT',
      path: `/${type}/${i.id}`,
      // Conditional on the version we read: a change in between makes the upstream refuse, and the blob goes.
      headers: version ? { 'if-match': `W/"${version}"` } : {},
      blobs: [{ id: info.id, contentType: declared }],
      body,
      length: body.length,
      owner: () => `${type}/${i.id}`,
    });
    this.d.resources.relay(x, up);
  }

  /** GET Media/{id} asking for the content itself: served raw; otherwise the resource, as FHIR. */
  async rawMedia(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    x.continue100();
    const got = await this.d.resources.attachment(x, `/${i.path}`, MEDIA_CONTENT);
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
      return;
    }
    try {
      const content = got.attachment;
      const contentType = essence(typeof content?.['contentType'] === 'string' ? content['contentType'] : undefined);
      const wanted =
        new URLSearchParams(i.query).get('_output') === 'data' ||
        (contentType !== undefined && rawAccept(req.headers.accept) === contentType);
      if (wanted && content) {
        await this.serveAttachment(x, got);
        return;
      }
      // The client named a type the content is not: it gets the resource, as FHIR would answer.
      if (!got.whole) {
        // Only the content was kept of a large resource: the resource itself is fetched again and relayed as it comes.
        this.d.resources.relay(x, await this.d.resources.get(x, `/${i.path}`));
        return;
      }
      const body = Buffer.from(JSON.stringify(got.resource));
      const headers = { ...versionHeaders(got.resource, x.ctx.id), 'content-type': FHIR_JSON, vary: 'Accept' } as Record<
        string,
        string | number
      >;
      if (req.method === 'HEAD') {
        x.res.writeHead(200, { ...headers, 'content-length': body.length });
        x.res.end();
        return;
      }
      // The resource as FHIR: its attachments inflated or linked like any other read.
      await this.d.resources.sendResource(x, body, headers);
    } finally {
      await got.release();
    }
  }

  /** The attachment the `path` parameter names; the operations work on an instance. */
  private steps(i: Interaction): readonly PathStep[] {
    if (!i.resourceType || !i.id)
      throw new GatewayError('BAD_REQUEST', `$${i.operation} works on a resource instance, e.g. DocumentReference/123/$${i.operation}`);
    return parseAttachmentPath(new URLSearchParams(i.query).get('path'), i.resourceType);
  }

  /** Serves an attachment's content raw, from the store or from inline data the upstream holds. */
  private async serveAttachment(x: Exchange, got: FetchedAttachment): Promise<void> {
    const attachment = got.attachment!;
    const ref = findBlobRef((attachment['_data'] as { extension?: unknown } | undefined)?.extension);
    const inline = ref ? undefined : got.inline;
    if (!ref && !inline) throw new GatewayError('NOT_FOUND', 'the attachment has no content here (only a url, or nothing)');
    const info = ref ? await this.d.blobs.blobFor(ref, `${String(got.resource.resourceType)}/${String(got.resource.id)}`) : undefined;
    const declared =
      essence(typeof attachment['contentType'] === 'string' ? attachment['contentType'] : undefined) ??
      info?.contentType ??
      'application/octet-stream';
    // Stored content was checked against its type when written; inline data the upstream holds
    // may have been written around the gateway: a type the policy does not allow is served as bytes.
    const type = String(got.resource.resourceType);
    const contentType = ref || allowed(declared, x.settings.policy.allowedTypes(type)) ? declared : 'application/octet-stream';
    const headers = versionHeaders(got.resource, x.ctx.id);
    if (typeof headers['etag'] === 'string' && etagMatches(x.req.headers['if-none-match'], headers['etag'])) {
      x.res.writeHead(304, { ...headers, 'cache-control': contentCacheControl(x) });
      x.res.end();
      return;
    }
    if (ref) await this.d.raw.serve(x, headers, { contentType, size: info!.size, ref });
    else if (inline && 'bytes' in inline)
      await this.d.raw.serve(x, headers, { contentType, size: inline.bytes.length, inline: inline.bytes });
    else if (inline) await this.d.raw.serve(x, headers, { contentType, size: inline.size, file: inline.file });
  }
}

/** The Accept of a client asking for content as itself: one concrete media type that is not a FHIR or generic document format. */
function rawAccept(accept: string | undefined): string | undefined {
  if (!accept || accept.includes(',')) return undefined;
  const a = essence(accept);
  if (!a || a.includes('*') || NOT_RAW.test(a)) return undefined;
  return a;
}
