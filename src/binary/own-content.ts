import { GatewayError } from '../errors/catalogue.js';
import { parseAttachmentPath } from '../fhir/attachment-path.js';
import { findBlobRef } from '../fhir/blob-reference.js';
import type { ContentLinks, LinkedContent } from '../rewrite/externalize.js';
import type { Exchange } from '../security/exchange.js';
import { servable } from '../storage/blob-store.js';
import type { PlaneDeps } from './deps.js';

/**
 * An update's own content links (rewrite/externalize.ts ContentLinks): a link to `path` of
 * `Type/id` names the content the current version has there — read from the upstream when the
 * body carries such a link, and taken only if the store holds it for this very resource, as it
 * was stored (a reference in the upstream is never enough to hand over another's content).
 */
export function ownContent(d: PlaneDeps, x: Exchange, type: string, id: string): NonNullable<ContentLinks['own']> {
  const key = `${type}/${id}`;
  return {
    key,
    mayRead: x.rewrite.reader.mayRead(type),
    async resolve(path: string | undefined): Promise<LinkedContent | undefined> {
      const got = await d.resources.attachment(x, `/${key}`, path === undefined ? 'binary' : parseAttachmentPath(path, type));
      if ('relay' in got) {
        const status = got.relay.statusCode ?? 502;
        got.relay.resume();
        if (status >= 500) throw new GatewayError('UPSTREAM_UNAVAILABLE', `the upstream answered ${status} to a read of ${key}`);
        return undefined;
      }
      try {
        const ref = findBlobRef((got.attachment?.['_data'] as { extension?: unknown } | undefined)?.extension);
        const info = ref && (await d.store.head(ref.id));
        if (!ref || !info || info.owner !== key || info.sha256 !== ref.sha256 || !servable(info.state)) return undefined;
        return { id: info.id, sha256: info.sha256, size: info.size, sha1: info.sha1, contentType: info.contentType };
      } finally {
        await got.release();
      }
    },
  };
}
