import { GatewayError } from '../errors/catalogue.js';
import { isBlobId } from '../lib/blob-id.js';

/**
 * The stable reference the upstream keeps instead of the bytes: an extension carrying the blob id
 * and the content's SHA-256. Our own URL on purpose: HAPI's `externalized-binary-id` would be read
 * by a HAPI upstream with binary storage on as one of its own blobs. On Binary (a Resource, with no
 * `extension`) it sits on the primitive `data` element (`_data.extension`); on an Attachment, in
 * its `extension`.
 */
export const BLOB_EXTENSION_URL = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference';

/** Replaces our extension URL where the gateway did not put it: the client never sees our URL. */
export const REMOVED_URL = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference-removed';

/**
 * `value` (small, parsed FHIR JSON) with our extension URL replaced wherever it is: members of a
 * resource the gateway passes on as they are held (a Binary's FHIR view besides its data).
 */
export function withoutBlobUrls(value: unknown, depth = 0): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth > MAX_REFERENCE_DEPTH)
    throw new GatewayError('UPSTREAM_INVALID', `a resource nested deeper than ${MAX_REFERENCE_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((v) => withoutBlobUrls(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k] = k === 'url' && v === BLOB_EXTENSION_URL ? REMOVED_URL : withoutBlobUrls(v, depth + 1);
  return out;
}

export interface BlobRef {
  readonly id: string;
  readonly sha256: string;
}

interface Extension {
  url?: unknown;
  valueString?: unknown;
  extension?: unknown;
}

export function blobExtension(ref: BlobRef): { url: string; extension: { url: string; valueString: string }[] } {
  return {
    url: BLOB_EXTENSION_URL,
    extension: [
      { url: 'id', valueString: ref.id },
      { url: 'sha256', valueString: ref.sha256 },
    ],
  };
}

/** Finds our reference in an `extension` array; undefined when absent or malformed (a malformed one is never followed). */
export function findBlobRef(extensions: unknown): BlobRef | undefined {
  if (!Array.isArray(extensions)) return undefined;
  for (const ext of extensions as Extension[]) {
    if (ext?.url !== BLOB_EXTENSION_URL || !Array.isArray(ext.extension)) continue;
    const sub = (name: string) => (ext.extension as Extension[]).find((e) => e?.url === name)?.valueString;
    const id = sub('id');
    const sha256 = sub('sha256');
    if (typeof id === 'string' && isBlobId(id) && typeof sha256 === 'string' && /^[0-9a-f]{64}$/.test(sha256)) return { id, sha256 };
  }
  return undefined;
}

/** Deeper than the rewrite engine walks (128 levels): no resource the gateway stored content for is. */
const MAX_REFERENCE_DEPTH = 256;

/**
 * Whether `resource` (parsed FHIR JSON) carries our reference to `blob` — the extension with its
 * id and SHA-256, wherever it sits (an attachment, `_data`, a contained resource, nested
 * extensions) — not merely a mention of the id somewhere in its text. Throws rather than answer
 * "no" for a resource nested deeper than it looks: a "no" may delete content.
 */
export function refersTo(resource: unknown, blob: BlobRef, depth = 0): boolean {
  if (typeof resource !== 'object' || resource === null) return false;
  if (depth > MAX_REFERENCE_DEPTH) throw new Error(`no verdict: a resource nested deeper than ${MAX_REFERENCE_DEPTH} levels`);
  if (Array.isArray(resource)) return resource.some((v) => refersTo(v, blob, depth + 1));
  const o = resource as Record<string, unknown>;
  const ref = findBlobRef(o['extension']);
  if (ref && ref.id === blob.id && ref.sha256 === blob.sha256) return true;
  for (const v of Object.values(o)) if (typeof v === 'object' && refersTo(v, blob, depth + 1)) return true;
  return false;
}
