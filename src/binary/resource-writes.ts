import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { finished } from 'node:stream';
import { essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { targetOf, type Interaction } from '../fhir/interaction.js';
import { clientGone, spoolThrough } from '../lib/spool-file.js';
import { patchGuard } from '../rewrite/patch-guard.js';
import { requireJson } from '../rewrite/params.js';
import type { Exchange } from '../security/exchange.js';
import { writtenResource } from './blob-lifecycle.js';
import type { PlaneDeps } from './deps.js';
import { ownContent } from './own-content.js';

const FHIR_JSON_BODY = /^application\/(fhir\+json|json\+fhir|json)$/;
const FHIR_XML_BODY = /^application\/(fhir\+xml|xml\+fhir|xml)$/;
/** JSON Patch, and FHIRPath Patch (a Parameters resource): the two forms the guard can read. */
const PATCH_BODY = /^application\/(json-patch\+json|fhir\+json|json\+fhir|json)$/;

/**
 * Create and update of every resource type other than Binary: the body goes through the rewrite
 * engine, so attachment data at or above `externalize.minBytes` lands in the store (checked like
 * any upload) and the upstream keeps a reference; smaller data stays inline, checked too. PATCH
 * bodies are bounded by the same threshold: a patch could otherwise set attachment data past
 * the rewrite. FHIR XML bodies are refused (415, naming JSON): they are not rewritten.
 */
export class ResourceWrites {
  constructor(private readonly d: PlaneDeps) {}

  static owns(i: Interaction): boolean {
    if (i.resourceType === undefined || i.resourceType === 'Binary') return false;
    return i.kind === 'create' || i.kind === 'update' || i.kind === 'patch';
  }

  /** POST /[type], PUT /[type]/[id] (and their conditional forms). */
  async write(x: Exchange): Promise<void> {
    const { req, interaction: i } = x;
    const declared = essence(req.headers['content-type']) ?? '';
    if (FHIR_XML_BODY.test(declared)) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'FHIR XML resource bodies are not accepted (their attachments are not rewritten): send application/fhir+json',
      );
    }
    if (!FHIR_JSON_BODY.test(declared)) throw new GatewayError('UNSUPPORTED_MEDIA', 'a resource body must be application/fhir+json');
    x.continue100();
    const type = i.resourceType!;
    const own = i.kind === 'update' && i.id !== undefined ? ownContent(this.d, x, type, i.id) : undefined;
    const spooled = await this.d.blobs.externalize(
      x,
      req,
      own
        ? { own }
        : i.kind === 'update'
          ? {
              refuseLinks:
                'a conditional update cannot take back content by link (which resource it writes is known only to the FHIR server): send the data, or update Type/id',
            }
          : {},
    );
    if (!spooled) return;
    try {
      const blobs = spooled.blobs.map((b) => ({ id: b.info.id, contentType: b.contentType }));
      if (spooled.rootType !== type) {
        await this.d.blobs.discard(
          blobs.map((b) => b.id),
          x.ctx,
        );
        throw new GatewayError(
          'BAD_REQUEST',
          `the body of a ${type} ${i.kind} must be a ${type}, not ${spooled.rootType ?? 'something without resourceType'}`,
        );
      }
      const up = await this.d.blobs.commit(x, {
        method: i.method,
        path: targetOf(i),
        blobs,
        body: createReadStream(spooled.file),
        length: spooled.size,
        owner: (r) => writtenResource(type, i.id, r),
      });
      this.d.resources.relay(x, up);
    } finally {
      await unlink(spooled.file).catch(() => undefined);
    }
  }

  /**
   * PATCH: bounded by externalize.minBytes, and refused when it touches attachment members or
   * carries our blob reference (rewrite/patch-guard.ts); spooled while checked, then sent on
   * unchanged with its length. The patched resource comes back through the response rewrite.
   */
  async patch(x: Exchange): Promise<void> {
    const { req, res, rule } = x;
    const limit = x.settings.config.externalize.minBytes;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      throw new GatewayError(
        'PAYLOAD_TOO_LARGE',
        `a PATCH body may not exceed externalize.minBytes (${limit} bytes): send large attachment data with an update or $binary-access-write`,
      );
    }
    if (!PATCH_BODY.test(essence(req.headers['content-type']) ?? '')) {
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'a PATCH body must be application/json-patch+json or FHIRPath Patch as application/fhir+json: other formats are not checked',
      );
    }
    requireJson(req, x.interaction);
    x.continue100();
    const gone = clientGone(res);
    const spooled = await spoolThrough(req, patchGuard({ mayRead: !x.rewrite.withhold }), {
      dir: x.settings.config.server.spoolDir,
      kind: 'patch',
      maxBytes: Math.min(limit, rule.limits.maxRequestBytes),
      signal: gone.signal,
    }).finally(() => gone.release());
    if (!spooled) return;
    const body = createReadStream(spooled.file);
    finished(res, () => {
      body.destroy();
      void unlink(spooled.file).catch(() => undefined);
    });
    this.d.forwarder.forward(x, { body, contentLength: spooled.size, rewrite: x.rewrite });
  }
}
