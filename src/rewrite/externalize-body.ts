import type { Readable } from 'node:stream';
import { spoolThrough, type SpoolFile } from '../lib/spool-file.js';
import { Externalizer, type ExternalizedBlob, type ExternalizeOptions } from './externalize.js';

export interface ExternalizedBody extends SpoolFile {
  readonly blobs: readonly ExternalizedBlob[];
  readonly rootType: string | undefined;
  /** The top-level resource's securityContext as sent, if any. */
  readonly rootSecurityContext: unknown;
  /** `reference` values with a query, to be authorized as the searches a server runs for them. */
  readonly conditionalReferences: readonly string[];
}

/**
 * Reads a FHIR JSON body (a request, or a spooled Bundle) through the Externalizer into a
 * private spool file. The upstream gets nothing until every attachment has been stored and
 * checked, and then a body with a known length. Undefined when the client went away (nothing to
 * answer, nothing kept); a refusal rejects, with the blobs and the spool file already removed.
 */
export async function externalizeBody(
  body: Readable,
  spool: { readonly dir: string; readonly maxBytes: number; readonly signal: AbortSignal },
  opts: ExternalizeOptions,
): Promise<ExternalizedBody | undefined> {
  const ext = new Externalizer(opts);
  const spooled = await spoolThrough(body, ext, { ...spool, kind: 'body' });
  return (
    spooled && {
      ...spooled,
      blobs: ext.blobs,
      rootType: ext.rootType,
      rootSecurityContext: ext.rootSecurityContext,
      conditionalReferences: ext.conditionalReferences,
    }
  );
}
