import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import type { ScannedBundle } from '../fhir/bundle-scan.js';
import { targetOf } from '../fhir/interaction.js';
import type { ExternalizedBlob } from '../rewrite/externalize.js';
import { spoolBundleResponse, type EntryOutcome } from '../rewrite/response-scan.js';
import type { Exchange } from '../security/exchange.js';
import { GatewayError } from '../errors/catalogue.js';
import { FHIR_JSON, outcomeUnknown } from '../upstream/client.js';
import type { PlaneDeps } from './deps.js';

const OWNER = /^(?:.*\/)?([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]*)?$/;

/**
 * Batch and transaction Bundles, once authorized entry by entry (security/bundle.ts): the spooled
 * body goes through the rewrite engine like any resource write, then to the upstream. Its answer
 * settles the blobs: a refused transaction loses all of them; in a batch, each entry's own status
 * decides, and a linked blob's owner is the entry's `response.location`. The response is spooled
 * while those are read, then relayed as it came.
 */
export class BundleWrites {
  constructor(private readonly d: PlaneDeps) {}

  async write(x: Exchange, scanned: ScannedBundle): Promise<void> {
    const dir = x.settings.config.server.spoolDir;
    const spooled = await this.d.blobs.externalize(x, createReadStream(scanned.file));
    if (!spooled) return;
    const ids = spooled.blobs.map((b) => b.info.id);
    const responseFile = join(dir, `fbg-response-${randomUUID()}.json`);
    try {
      let up: IncomingMessage;
      const i = x.interaction;
      const headers = { 'content-type': FHIR_JSON, 'content-length': String(spooled.size), accept: FHIR_JSON };
      try {
        up = await this.d.resources.send(x, 'POST', targetOf(i), headers, createReadStream(spooled.file));
      } catch (err) {
        if (outcomeUnknown(err)) await this.d.blobs.intend(intents(spooled.blobs, scanned), x.ctx);
        await this.d.blobs.unsettled(ids, x.ctx, err);
        throw err;
      }
      const status = up.statusCode ?? 502;
      if (!spooled.blobs.length || status < 200 || status >= 300) {
        await this.d.blobs.discard(ids, x.ctx);
        this.d.resources.relay(x, up);
        return;
      }
      let outcome;
      try {
        outcome = await spoolBundleResponse(up, responseFile);
      } catch (err) {
        // Accepted, then the answer broke off: the upstream may hold every entry. The blobs stay
        // pending, tagged with their entries' requests, for the sweeper; the client hears 502.
        await this.d.blobs.intend(intents(spooled.blobs, scanned), x.ctx);
        throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream broke off its answer', { cause: err });
      }
      await this.settle(x, spooled.blobs, outcome.entries, scanned);
      const answer = this.d.resources.answerHeaders(up, x.ctx.id);
      delete answer['transfer-encoding'];
      // Entries the upstream answered with resources (Prefer: return=representation) are reads too.
      await this.d.resources.sendBody(x, createReadStream(responseFile), status, answer as Record<string, string | number | string[]>);
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
    x: Exchange,
    blobs: readonly ExternalizedBlob[],
    entries: readonly EntryOutcome[],
    scanned: ScannedBundle,
  ): Promise<void> {
    const { type } = scanned;
    const failed: string[] = [];
    const unsettled: ExternalizedBlob[] = [];
    for (const blob of blobs) {
      const entry = blob.entry === undefined ? undefined : entries[blob.entry];
      const ok = entry?.status !== undefined ? /^2\d\d\b/.test(entry.status) : type === 'transaction' ? true : undefined;
      if (ok === false) {
        failed.push(blob.info.id);
        continue;
      }
      if (ok === undefined) {
        unsettled.push(blob);
        continue;
      }
      const m = OWNER.exec(entry?.location ?? '');
      // A POST entry answered 200 (not 201) matched an existing resource (a conditional create)
      // that never referred to the blob: deleted, as for a single write. An entry accepted without
      // a location names no owner: pending, for the sweeper.
      const matched = blob.entry !== undefined && scanned.entries[blob.entry]?.method === 'POST' && /^200\b/.test(entry?.status ?? '');
      if (matched) {
        // The entry's conditional create matched an existing resource: nothing refers to the blob.
        failed.push(blob.info.id);
        continue;
      }
      if (!m) {
        unsettled.push(blob);
        continue;
      }
      await this.d.blobs.link(blob.info.id, blob.contentType, `${m[1]}/${m[2]}`, x.ctx);
    }
    await this.d.blobs.discard(failed, x.ctx);
    await this.d.blobs.intend(intents(unsettled, scanned), x.ctx);
  }
}

/**
 * What each blob of a Bundle was written for: its entry's request — `Type/id` for a PUT of one
 * resource, `Type` for a POST (or a conditional PUT) — never the type of a resource contained or
 * nested in the entry's, which no search would find. Undefined when the entry says nothing usable.
 */
export function intents(blobs: readonly ExternalizedBlob[], scanned: ScannedBundle): { id: string; intent: string | undefined }[] {
  return blobs.map((b) => ({ id: b.info.id, intent: b.entry === undefined ? undefined : entryIntent(scanned.entries[b.entry]) }));
}

function entryIntent(e: ScannedBundle['entries'][number] | undefined): string | undefined {
  if (!e) return undefined;
  const path = e.url.split('?')[0].replace(/^\/+/, '');
  const m = /^([A-Z][A-Za-z]{0,63})(?:\/([A-Za-z0-9\-.]{1,64}))?$/.exec(path);
  if (!m) return undefined;
  if (e.method === 'PUT' && m[2] !== undefined && !e.url.includes('?')) return `${m[1]}/${m[2]}`;
  return e.method === 'POST' || e.method === 'PUT' ? m[1] : undefined;
}
