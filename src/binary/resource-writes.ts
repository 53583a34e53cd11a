import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import type { GatewayConfig } from '../config/types.js';
import { essence } from '../content/media-type.js';
import { GatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import { requireJson } from '../http/response-params.js';
import { SizeLimit } from '../proxy/size-limit.js';
import { spoolExternalized } from '../rewrite/spool.js';
import type { EffectiveRule } from '../security/policy.js';
import type { ContentIo } from './content-io.js';

const FHIR_JSON_BODY = /^application\/(fhir\+json|json\+fhir|json)$/;
const FHIR_XML_BODY = /^application\/(fhir\+xml|xml\+fhir|xml)$/;

/**
 * Create and update of every resource type other than Binary: the body goes through the rewrite
 * engine, so attachment data at or above `externalize.minBytes` lands in the store (checked like
 * any upload) and the upstream keeps a reference; smaller data stays inline, checked too. PATCH
 * bodies are bounded by the same threshold: a patch could otherwise set attachment data past
 * the rewrite. FHIR XML bodies are refused (415, naming JSON): they are not rewritten.
 */
export class ResourceWrites {
  constructor(
    private readonly io: ContentIo,
    private readonly config: () => GatewayConfig,
  ) {}

  static owns(i: Interaction): boolean {
    if (i.resourceType === undefined || i.resourceType === 'Binary') return false;
    return i.interaction === 'create' || i.interaction === 'update' || i.interaction === 'patch';
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    proceed: () => void,
  ): Promise<void> {
    const config = this.config();
    const path = `/${i.path}${i.query ? `?${i.query}` : ''}`;
    if (i.interaction === 'patch') {
      this.patch(req, res, ctx, rule, i, path, config.externalize.minBytes, proceed);
      return;
    }
    const declared = essence(req.headers['content-type']) ?? '';
    if (FHIR_XML_BODY.test(declared))
      throw new GatewayError(
        'UNSUPPORTED_MEDIA',
        'FHIR XML resource bodies are not accepted (their attachments are not rewritten): send application/fhir+json',
      );
    if (!FHIR_JSON_BODY.test(declared)) throw new GatewayError('UNSUPPORTED_MEDIA', 'a resource body must be application/fhir+json');
    proceed();
    const allowedTypes = config.content.allowedTypes;
    const spooled = await spoolExternalized(req, res, config.server.spoolDir ?? tmpdir(), rule.limits.maxRequestBytes, {
      store: this.io.store,
      minBytes: config.externalize.minBytes,
      maxBytes: rule.limits.maxRequestBytes,
      allowedTypes: (rt) => allowedTypes[rt] ?? allowedTypes['Binary'] ?? [],
    });
    if (!spooled) return;
    try {
      if (spooled.rootType !== i.resourceType) {
        await this.io.discard(
          spooled.blobs.map((b) => b.info.id),
          ctx,
        );
        throw new GatewayError(
          'BAD_REQUEST',
          `the body of a ${i.resourceType} ${i.interaction} must be a ${i.resourceType}, not ${spooled.rootType ?? 'something without resourceType'}`,
        );
      }
      const blobs = spooled.blobs.map((b) => ({ id: b.info.id, contentType: b.contentType }));
      const type = i.resourceType!;
      const location = new RegExp(`/${type}/([A-Za-z0-9\\-.]{1,64})(/|$)`);
      const owner = (up: IncomingMessage) => {
        const id = i.id ?? location.exec(String(up.headers.location ?? up.headers['content-location'] ?? ''))?.[1];
        return id ? `${type}/${id}` : undefined;
      };
      const up = await this.io.commit(req, ctx, rule, i.method, path, {}, blobs, createReadStream(spooled.file), spooled.size, owner);
      this.io.relay(req, up, res, ctx);
    } finally {
      await unlink(spooled.file).catch(() => undefined);
    }
  }

  private patch(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    path: string,
    limit: number,
    proceed: () => void,
  ): void {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit)
      throw new GatewayError(
        'PAYLOAD_TOO_LARGE',
        `a PATCH body may not exceed externalize.minBytes (${limit} bytes): send large attachment data with an update or $binary-access-write`,
      );
    requireJson(req, i);
    proceed();
    const max = Math.min(limit, rule.limits.maxRequestBytes);
    // The patched resource comes back through the response rewrite, like any read.
    this.io.upstream.forward(req, res, ctx, {
      path,
      forwardAuthorization: rule.forwardAuthorization,
      body: req.pipe(new SizeLimit(max)),
      ...(ctx.rewrite ? { rewrite: ctx.rewrite } : {}),
    });
  }
}
