import { createReadStream } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import { pipeline } from 'node:stream';
import { essence } from '../content/media-type.js';
import { noteBlob, noteInline } from '../lib/blob-events.js';
import { GatewayError } from '../errors/catalogue.js';
import { findBlobRef, withoutBlobUrls } from '../fhir/blob-reference.js';
import { RELATIVE_REFERENCE } from '../fhir/resource-types.js';
import { Base64Encode, base64Length } from '../lib/base64.js';
import { etagMatches } from '../lib/range.js';
import { requireJson } from '../rewrite/params.js';
import type { Exchange } from '../security/exchange.js';
import { SecurityContextGuard } from '../security/security-context.js';
import { FHIR_JSON } from '../upstream/client.js';
import { binaryView } from './binary-view.js';
import type { PlaneDeps } from './deps.js';
import { contentCacheControl, versionHeaders } from './raw-response.js';
import type { FetchedAttachment } from './upstream-resources.js';

interface BinaryResource {
  resourceType?: unknown;
  id?: unknown;
  meta?: { versionId?: unknown; lastUpdated?: unknown };
  contentType?: unknown;
  securityContext?: { reference?: unknown };
  data?: unknown;
  _data?: { extension?: unknown };
  [key: string]: unknown;
}

/**
 * Binary read and vread (FHIR R4 Binary over REST): the content itself, with the Binary's
 * headers (ETag, Last-Modified, X-Security-Context), or the Binary resource as FHIR JSON with its
 * content streamed in; and the listings (history, search), which only a caller who may read
 * every type may see. Every read passes the Binary's securityContext first.
 */
export class BinaryReads {
  constructor(private readonly d: PlaneDeps) {}

  /** GET /Binary/{id}, /Binary/{id}/_history/{vid}. */
  async read(x: Exchange): Promise<void> {
    x.continue100();
    const got = await this.d.resources.attachment(x, `/${x.interaction.path}`, 'binary');
    if ('relay' in got) {
      this.d.resources.relay(x, got.relay);
      return;
    }
    try {
      await this.serve(x, got);
    } finally {
      await got.release();
    }
  }

  /** Binary history and search: versions and results carry content and references of Binaries with any securityContext. */
  list(x: Exchange): void {
    const i = x.interaction;
    if (!SecurityContextGuard.readsEverything(x)) {
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        `Binary ${i.kind} needs read access to every resource type (user/*.r or system/*.r): each Binary's securityContext governs it`,
      );
    }
    requireJson(x.req, i);
    x.continue100();
    this.d.forwarder.forward(x, { rewrite: x.rewrite });
  }

  private async serve(x: Exchange, got: FetchedAttachment): Promise<void> {
    const { req, res } = x;
    const binary = got.resource as BinaryResource;
    if (binary.resourceType !== 'Binary')
      throw new GatewayError('UPSTREAM_INVALID', 'the upstream answered a Binary read with something else');
    await this.d.guard.binaryRead(x, binary);
    const contentType = (typeof binary.contentType === 'string' && essence(binary.contentType)) || 'application/octet-stream';
    const ref = findBlobRef(binary._data?.extension);
    const inline = ref ? undefined : got.inline;
    const info = ref ? await this.d.blobs.blobFor(ref, `Binary/${String(binary.id)}`) : undefined;
    const size = info?.size ?? (inline ? ('bytes' in inline ? inline.bytes.length : inline.size) : 0);

    // The FHIR view carries the same content base64-encoded: it is cached no more than the raw one.
    const headers: OutgoingHttpHeaders = { ...versionHeaders(binary, x.ctx.id), vary: 'Accept', 'cache-control': contentCacheControl(x) };
    const sc = binary.securityContext?.reference;
    if (typeof sc === 'string' && RELATIVE_REFERENCE.test(sc)) headers['x-security-context'] = sc;
    if (typeof headers['etag'] === 'string' && etagMatches(req.headers['if-none-match'], headers['etag'])) {
      res.writeHead(304, headers);
      res.end();
      return;
    }

    const view = binaryView(req.headers.accept, x.interaction.query, contentType);
    if (view === 'fhir-xml') throw new GatewayError('UNSUPPORTED_MEDIA', 'FHIR XML is not served; ask for application/fhir+json');
    if (view === 'raw') {
      const content = ref
        ? { ref }
        : inline
          ? 'bytes' in inline
            ? { inline: inline.bytes }
            : { file: inline.file }
          : { inline: Buffer.alloc(0) };
      await this.d.raw.serve(x, headers, { contentType, size, ...content });
      return;
    }
    // The Binary as FHIR JSON: its members, then its content base64-encoded as it streams.
    const { data: _inlineData, _data: _ref, ...rest } = binary;
    const hasData = size > 0 || ref !== undefined;
    // Nothing else in a Binary is content (the write side takes none): a reference planted there leaves as a removed one.
    const head = Buffer.from(`${JSON.stringify(withoutBlobUrls(rest)).slice(0, -1)}${hasData ? ',"data":"' : ''}`);
    const tail = Buffer.from(hasData ? '"}' : '}');
    headers['content-type'] = FHIR_JSON;
    headers['content-length'] = head.length + (hasData ? base64Length(size) : 0) + tail.length;
    const bytes =
      req.method === 'HEAD' || !hasData
        ? undefined
        : ref
          ? await this.d.raw.open(ref.id, x.ctx.id)
          : inline && 'file' in inline
            ? createReadStream(inline.file)
            : undefined;
    if (bytes && ref) noteBlob(x.ctx, { action: 'read', blob: ref.id, bytes: size, resource: `Binary/${x.interaction.id ?? ''}` });
    else if (req.method !== 'HEAD' && !ref && size > 0) noteInline(x.ctx, size);
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.write(head);
    // pipeline, not pipe: a failure midway must reach streamTo, which cuts the connection.
    if (bytes)
      await this.d.raw.streamTo(
        pipeline(bytes, new Base64Encode(), () => undefined),
        res,
        false,
        x.ctx.id,
        ref?.id,
      );
    else if (inline && 'bytes' in inline) res.write(inline.bytes.toString('base64'));
    res.end(tail);
  }
}
