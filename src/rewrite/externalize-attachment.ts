import { allowed, essence } from '../content/media-type.js';
import { GatewayError } from '../errors/catalogue.js';
import { blobExtension } from '../fhir/blob-reference.js';
import type { BlobInfo } from '../storage/blob-store.js';
import type { SinkResult } from './data-sink.js';

/** What the rewrite keeps about one object while it streams by. */
export interface ObjectState {
  /** A resource: the document, a contained one, an entry's, a parameter's, an outcome. */
  readonly root: boolean;
  held: Map<string, unknown> | undefined;
  contentType: string | undefined;
  resourceType: string | undefined;
  data: SinkResult | undefined;
  /** On a resource root: its attachments, checked against its allow-list at its end. */
  attachments: { readonly declared: string; readonly stored: Stored | undefined }[] | undefined;
  /** On a resource root: content was placed somewhere below it (not at it). */
  contentBelow: boolean;
}

/** An ExternalizedBlob while its resource is still being read. */
export interface Stored {
  info: BlobInfo;
  contentType: string;
  resourceType: string;
  entry: number | undefined;
}

/**
 * An object whose `data` was read (Binary.data, or an Attachment's): its content is checked
 * against the declared type, and what it becomes is returned, in order: inline data as it was
 * (small), or the store's `size`, `hash` and our reference in `_data.extension` in place of it.
 */
export async function rewrittenMembers(
  frame: ObjectState,
  result: SinkResult,
): Promise<{ readonly declared: string; readonly members: Map<string, unknown> }> {
  const binary = frame.root;
  if (binary && frame.resourceType !== 'Binary') {
    throw new GatewayError(
      'BAD_REQUEST',
      `a "data" member at the root of a resource is only valid in Binary, not ${frame.resourceType ?? 'a resource without resourceType'}`,
    );
  }
  const declared = essence(frame.contentType);
  if (!declared)
    throw new GatewayError(
      'UNSUPPORTED_MEDIA',
      binary ? 'Binary.contentType is required' : 'an Attachment with data needs a valid contentType',
    );
  const bad = await result.sniffer.judge(declared);
  if (bad) throw bad;
  const held = new Map(frame.held);
  if (result.kind === 'inline') return { declared, members: new Map([['data', result.bytes.toString('base64')], ...held]) };
  const { info } = result;
  if (!binary) {
    const size = held.get('size');
    const hash = held.get('hash');
    if (size !== undefined && size !== info.size)
      throw new GatewayError('BAD_REQUEST', `Attachment.size says ${String(size)} bytes, the data has ${info.size}`);
    if (hash !== undefined && hash !== info.sha1)
      throw new GatewayError('BAD_REQUEST', 'Attachment.hash does not match the SHA-1 of the data');
    held.set('size', info.size);
    held.set('hash', info.sha1);
  }
  const prior = held.get('_data');
  const element = prior && typeof prior === 'object' && !Array.isArray(prior) ? (prior as Record<string, unknown>) : {};
  const extension = Array.isArray(element['extension']) ? (element['extension'] as unknown[]) : [];
  held.set('_data', { ...element, extension: [...extension, blobExtension({ id: info.id, sha256: info.sha256 })] });
  return { declared, members: held };
}

/** The allow-list of the resource that carries the attachments; known only once the resource is complete. */
export function checkAllowed(frame: ObjectState, allowedTypes: (resourceType: string) => readonly string[]): void {
  if (!frame.attachments) return;
  const rt = frame.resourceType;
  if (!rt) throw new GatewayError('BAD_REQUEST', 'a resource with attachment data has no resourceType');
  const allow = allowedTypes(rt);
  for (const { declared, stored } of frame.attachments) {
    if (!allowed(declared, allow)) throw new GatewayError('UNSUPPORTED_MEDIA', `${declared} is not allowed for ${rt}`);
    if (stored) stored.resourceType = rt;
  }
}
