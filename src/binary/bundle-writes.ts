import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { GatewayConfig } from '../config/types.js';
import type { RequestContext } from '../http/context.js';
import { spoolBundleResponse, type EntryOutcome } from '../rewrite/bundle-outcome.js';
import type { ExternalizedBlob } from '../rewrite/externalize.js';
import { spoolExternalized } from '../rewrite/spool.js';
import type { EffectiveRule } from '../security/policy.js';
import { FHIR_JSON, type ContentIo } from './content-io.js';
import { sendUpstream, UpstreamFailure } from './upstream-exchange.js';

const OWNER = /^(?:.*\/)?([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]*)?$/;

/**
 * Batch and transaction Bundles, once authorized entry by entry (src/http/gateway.ts): the spooled
 * body goes through the rewrite engine like any resource write, then to the upstream. Its answer
 * settles the blobs: a refused transaction loses all of them; in a batch, each entry's own status
 * decides, and a linked blob's owner is the entry's `response.location`. The response is spooled
 * while those are read, then relayed as it came.
 */
export class BundleWrites {
  constructor(
    private readonly io: ContentIo,
    private readonly config: () => GatewayConfig,
  ) {}

  async forward(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    rule: EffectiveRule,
    path: string,
    file: string,
    type: 'batch' | 'transaction',
  ): Promise<void> {
    const config = this.config();
    const dir = config.server.spoolDir ?? tmpdir();
    const allowedTypes = config.content.allowedTypes;
    const spooled = await spoolExternalized(createReadStream(file), res, dir, rule.limits.maxRequestBytes, {
      store: this.io.store,
      minBytes: config.externalize.minBytes,
      maxBytes: rule.limits.maxRequestBytes,
      allowedTypes: (rt) => allowedTypes[rt] ?? allowedTypes['Binary'] ?? [],
    });
    if (!spooled) return;
    const ids = spooled.blobs.map((b) => b.info.id);
    const responseFile = join(dir, `fbg-response-${randomUUID()}.json`);
    try {
      let up: IncomingMessage;
      try {
        up = await sendUpstream(
          this.io.upstream.request(req, ctx, rule.forwardAuthorization, 'POST', path, {
            'content-type': FHIR_JSON,
            'content-length': String(spooled.size),
            accept: FHIR_JSON,
          }),
          createReadStream(spooled.file),
        );
      } catch (err) {
        await this.io.discard(ids, ctx);
        throw err instanceof UpstreamFailure ? err.gatewayError : err;
      }
      const status = up.statusCode ?? 502;
      if (!spooled.blobs.length || status < 200 || status >= 300) {
        await this.io.discard(ids, ctx);
        this.io.relay(req, up, res, ctx);
        return;
      }
      const outcome = await spoolBundleResponse(up, responseFile);
      await this.settle(ctx, spooled.blobs, outcome.entries, type);
      const headers = this.io.upstream.clientHeaders(up.headers, ctx.id);
      delete headers['transfer-encoding'];
      if (ctx.rewrite) {
        // Entries the upstream answered with resources (Prefer: return=representation) are reads too.
        await this.io.responses.sendBody(createReadStream(responseFile), res, status, headers, ctx, ctx.rewrite);
        return;
      }
      headers['content-length'] = outcome.size;
      res.writeHead(status, headers);
      await pipeline(createReadStream(responseFile), res).catch(() => res.destroy());
    } finally {
      await unlink(spooled.file).catch(() => undefined);
      await unlink(responseFile).catch(() => undefined);
    }
  }

  /**
   * A transaction answered 2xx succeeded whole. A batch entry succeeded when its own status is
   * 2xx; a failed one loses its blobs. When the response cannot be read per entry, blobs stay
   * pending: the upstream may hold them, so only the retention sweeper may decide.
   */
  private async settle(
    ctx: RequestContext,
    blobs: readonly ExternalizedBlob[],
    entries: readonly EntryOutcome[],
    type: 'batch' | 'transaction',
  ): Promise<void> {
    const failed: string[] = [];
    for (const blob of blobs) {
      const entry = blob.entry === undefined ? undefined : entries[blob.entry];
      const ok = entry?.status !== undefined ? /^2\d\d\b/.test(entry.status) : type === 'transaction' ? true : undefined;
      if (ok === false) {
        failed.push(blob.info.id);
        continue;
      }
      if (ok === undefined) continue;
      const m = OWNER.exec(entry?.location ?? '');
      const owner = m ? `${m[1]}/${m[2]}` : undefined;
      await this.io.store
        .setMeta(blob.info.id, { state: 'linked', contentType: blob.contentType, ...(owner ? { owner } : {}) })
        .catch(() => undefined);
    }
    await this.io.discard(failed, ctx);
  }
}
