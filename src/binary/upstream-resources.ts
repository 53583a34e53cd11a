import { unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { resolveAttachment, type PathStep } from '../fhir/attachment-path.js';
import { readAttachment } from '../rewrite/attachment-reader.js';
import type { RewriteParams } from '../rewrite/params.js';
import type { ResponseRewrite } from '../rewrite/response-rewrite.js';
import { upstreamFailure } from '../errors/map.js';
import type { Exchange } from '../security/exchange.js';
import { MAX_RESOURCE_BYTES, readJson, send, type UpstreamClient } from '../upstream/client.js';

export interface FhirResource {
  resourceType?: unknown;
  id?: unknown;
  meta?: { versionId?: unknown; lastUpdated?: unknown };
  [key: string]: unknown;
}

/** One attachment of a resource read from the upstream, with its inline content if it has some. */
export interface FetchedAttachment {
  /** The whole resource when it was small; its identity members (resourceType, id, meta, securityContext) when it was streamed. */
  readonly resource: FhirResource;
  readonly whole: boolean;
  readonly attachment: Record<string, unknown> | undefined;
  readonly inline: { readonly bytes: Buffer } | { readonly file: string; readonly size: number } | undefined;
  /** Removes the spool file, if any. */
  release(): Promise<void>;
}

/** The upstream's answer when it is not the 200 a handler reads: the client gets it as it is. */
export interface Relay {
  readonly relay: IncomingMessage;
}

/**
 * The resources the binary plane reads from the upstream, and the answers it sends back: a
 * small resource parsed, a large one streamed for one attachment, any answer relayed through
 * the response rewrite.
 */
export class UpstreamResources {
  constructor(
    private readonly client: UpstreamClient,
    private readonly responses: ResponseRewrite,
  ) {}

  /** A request of the gateway's own with a body; resolves with the response head. */
  send(x: Exchange, method: string, path: string, headers: Record<string, string>, body: Buffer | Readable): Promise<IncomingMessage> {
    return send(this.client.request(x, method, path, headers), body);
  }

  /** GETs `path` from the upstream as FHIR JSON; resolves with the response head. */
  get(x: Exchange, path: string): Promise<IncomingMessage> {
    return this.client.get(x, path);
  }

  /** GETs a resource: parsed (bounded) on 200, else the answer to relay. */
  async resource(x: Exchange, path: string): Promise<{ readonly resource: FhirResource } | Relay> {
    const up = await this.client.get(x, path);
    if (up.statusCode !== 200) return { relay: up };
    return { resource: (await readJson(up, MAX_RESOURCE_BYTES)) as FhirResource };
  }

  /**
   * GETs a resource for one of its attachments (`binary`: Binary.data). A small resource is parsed
   * whole; a larger one is streamed and only the attachment is kept, its inline data spooled to a
   * private file, so a resource held with hundreds of megabytes inline is served in bounded memory.
   */
  async attachment(x: Exchange, path: string, steps: readonly PathStep[] | 'binary'): Promise<FetchedAttachment | Relay> {
    const up = await this.client.get(x, path);
    if (up.statusCode !== 200) return { relay: up };
    const length = up.headers['content-length'];
    if (length !== undefined && Number(length) <= MAX_RESOURCE_BYTES) {
      const resource = (await readJson(up, MAX_RESOURCE_BYTES)) as FhirResource;
      const attachment =
        steps === 'binary' ? (resource.resourceType === 'Binary' ? resource : undefined) : resolveAttachment(resource, steps);
      const data = attachment?.['data'];
      return {
        resource,
        whole: true,
        attachment,
        inline: typeof data === 'string' ? { bytes: Buffer.from(data, 'base64') } : undefined,
        release: async () => undefined,
      };
    }
    // The upstream breaking off its answer midway is its failure (502), not ours.
    const a = await readAttachment(up, steps, x.settings.config.server.spoolDir).catch((err: unknown) => {
      throw upstreamFailure(err);
    });
    const file = a.spool?.file;
    return {
      resource: a.resource,
      whole: false,
      attachment: a.attachment,
      inline: a.spool,
      release: async () => (file ? unlink(file).catch(() => undefined) : undefined),
    };
  }

  /** Sends the upstream's answer on, through the response rewrite (attachments inflated or linked, within the budget). */
  relay(x: Exchange, up: IncomingMessage, params: RewriteParams = x.rewrite): void {
    this.responses.send(x, up, this.client.answerHeaders(up, x.ctx.id), params);
  }

  /** A small resource the plane holds, sent as FHIR JSON through the response rewrite. */
  sendResource(x: Exchange, body: Buffer, headers: Record<string, string | number>): Promise<void> {
    return this.responses.sendBuffer(x, body, 200, headers, x.rewrite);
  }

  /** A whole answer the plane spooled, through the response rewrite. */
  sendBody(x: Exchange, body: AsyncIterable<Buffer>, status: number, headers: Record<string, string | number | string[]>): Promise<void> {
    return this.responses.sendBody(x, body, status, headers, x.rewrite);
  }

  /** The upstream's response headers as the client gets them. */
  answerHeaders(up: IncomingMessage, id: string): ReturnType<UpstreamClient['answerHeaders']> {
    return this.client.answerHeaders(up, id);
  }
}
