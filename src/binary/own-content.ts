import { GatewayError } from '../errors/catalogue.js';
import { parseAttachmentPath } from '../fhir/attachment-path.js';
import type { BlobRef } from '../fhir/blob-reference.js';
import { upstreamFailure } from '../errors/map.js';
import type { ContentLinks, LinkedContent } from '../rewrite/externalize.js';
import { canonicalSteps, readStoredRefs } from '../rewrite/stored-refs.js';
import type { Exchange } from '../security/exchange.js';
import { servable } from '../storage/blob-store.js';
import type { PlaneDeps } from './deps.js';

/**
 * An update's own content links (rewrite/externalize.ts ContentLinks): a link to `path` of
 * `Type/id` names the content the current version has there — read from the upstream once per
 * request, when the body carries the first such link (however many it carries, one read: each
 * further link is a lookup), and taken only if the store holds it for this very resource, as it
 * was stored (a reference in the upstream is never enough to hand over another's content).
 */
export function ownContent(d: PlaneDeps, x: Exchange, type: string, id: string): NonNullable<ContentLinks['own']> {
  const key = `${type}/${id}`;
  let current: Promise<Map<string, BlobRef> | undefined> | undefined;
  const resolved = new Map<string, Promise<LinkedContent | undefined>>();

  async function readCurrent(): Promise<Map<string, BlobRef> | undefined> {
    const up = await d.resources.get(x, `/${key}`);
    if (up.statusCode !== 200) {
      const status = up.statusCode ?? 502;
      up.resume();
      if (status >= 500) throw new GatewayError('UPSTREAM_UNAVAILABLE', `the upstream answered ${status} to a read of ${key}`);
      return undefined;
    }
    // The upstream breaking off its answer midway is its failure (502), not ours.
    return readStoredRefs(up).catch((err: unknown) => {
      throw err instanceof GatewayError ? err : upstreamFailure(err);
    });
  }

  async function content(where: string): Promise<LinkedContent | undefined> {
    const ref = (await (current ??= readCurrent()))?.get(where);
    const info = ref && (await d.store.head(ref.id));
    if (!ref || !info || info.owner !== key || info.sha256 !== ref.sha256 || !servable(info.state)) return undefined;
    return { id: info.id, sha256: info.sha256, size: info.size, sha1: info.sha1, contentType: info.contentType };
  }

  return {
    key,
    mayRead: x.rewrite.reader.mayRead(type),
    async resolve(path: string | undefined): Promise<LinkedContent | undefined> {
      // A link without a path is Binary.data's, which only a Binary has.
      if (path === undefined && type !== 'Binary') return undefined;
      const steps = parseAttachmentPath(path ?? 'Binary.data', type);
      const where = type === 'Binary' ? '' : canonicalSteps(steps);
      let got = resolved.get(where);
      if (!got) resolved.set(where, (got = content(where)));
      return got;
    },
  };
}
