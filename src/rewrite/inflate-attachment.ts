import { CONTENT_SHA256_EXTENSION, CONTENT_URL_EXTENSION } from '../fhir/content-link.js';
import type { BlobRef } from '../fhir/blob-reference.js';
import { base64Chunks } from '../lib/base64.js';
import type { BlobInfo, BlobStore } from '../storage/blob-store.js';
import { blobUnreadable } from '../storage/blob-store.js';
import { firstBytes, integrityFailure } from '../storage/chunks.js';
import type { Slot } from './inflate-output.js';

/** The resource whose id governs the attachments below it: blobs are served only to their owner. */
export interface Owner {
  type: string | undefined;
  id: string | undefined;
  ended: boolean;
}

/** What one attachment's end must add: its content or a link, and what `_data` held besides our reference. */
export interface Att {
  /** Our reference, with the blob if it may be inflated (checked and within budget). */
  ref: { readonly ref: BlobRef; readonly inflate: BlobInfo | undefined } | undefined;
  rest: Record<string, unknown> | undefined;
  /** Inline data was sent: a stored copy must not add a second `data`. */
  dataSent: boolean;
  /** Inline data did not fit the budget: it needs a link instead. */
  overflow: boolean;
}

export function newAtt(): Att {
  return { ref: undefined, rest: undefined, dataSent: false, overflow: false };
}

/** What one run did, for the log and the tests. */
export interface InflateReport {
  inflated: number;
  linked: number;
  /** Decoded bytes of attachment data sent (stored and inline). */
  bytes: number;
}

export interface AttachmentEnd {
  readonly owner: Owner;
  readonly att: Att;
  /** The attachment is Binary.data (a Binary at a resource's root). */
  readonly binaryRoot: boolean;
  /** The attachment is its owner itself (a Binary that is the document or an entry's resource). */
  readonly isOwner: boolean;
  /** From the owner to the attachment, e.g. `.content[0].attachment`. */
  readonly path: string;
  /**
   * The entry's resource the attachment sits in, when the owner is a Bundle above it: content
   * written for that resource is linked through it (the path from it; `isSelf`: it is a Binary's data).
   */
  readonly claim?: { readonly owner: Owner; readonly path: string; readonly isSelf: boolean };
  readonly hasUrl: boolean;
  /** Whether the object already has members (a comma comes first). */
  readonly comma: boolean;
  readonly store: BlobStore;
  readonly report: InflateReport;
  link(owner: string, path: string | undefined): string;
  signedLink?(owner: string, blob: { readonly id: string; readonly sha256: string }): string | undefined;
  warn?(what: string, blob?: string): void;
  /** Stored content that failed its digest (logged at error: the store holds wrong bytes). */
  corrupt?(blob: string, cause: string): void;
  served?(blob: string, owner: string, bytes: number): void;
}

function known(o: Owner): boolean {
  return o.ended || (o.type !== undefined && o.id !== undefined);
}

/** Whom the store holds this content for (as referenced: same SHA-256), asking it unless the budget already did. */
async function ownerOf(store: BlobStore, ref: BlobRef, known: BlobInfo | undefined): Promise<string | undefined> {
  let info = known;
  try {
    info ??= await store.head(ref.id);
  } catch {
    return undefined;
  }
  return info && info.sha256 === ref.sha256 ? info.owner : undefined;
}

/**
 * What an attachment gets at its end, decided once its owner's id is known: the stored content
 * (if it fits and was written for this resource), else a link, plus whatever else `_data` held.
 */
export function attachmentEnd(a: AttachmentEnd): Slot {
  const { owner, att, report } = a;
  let comma = a.comma;
  const member = (key: string) => {
    const s = `${comma ? ',' : ''}${JSON.stringify(key)}:`;
    comma = true;
    return s;
  };
  const blob = att.ref && !att.dataSent ? att.ref.inflate : undefined;
  const needsLink = (att.ref !== undefined && !att.dataSent) || att.overflow;
  return {
    // An attachment with a stored reference in an entry waits for the entry's identity too: it may be whose content it is.
    ready: () => known(owner) && (!a.claim || !att.ref || known(a.claim.owner)),
    discard: async () => undefined,
    async *render() {
      let ownerKey = owner.type && owner.id ? `${owner.type}/${owner.id}` : undefined;
      let linkType = owner.type;
      let path = a.path;
      let self = a.isOwner;
      let streamed = false;
      // Content written for the entry's resource, not for the Bundle the answer is: a link through
      // the entry serves it (a link through the Bundle would name content the Bundle does not own).
      const claim = a.claim;
      const claimKey = claim?.owner.type && claim.owner.id ? `${claim.owner.type}/${claim.owner.id}` : undefined;
      const claimed =
        claimKey !== undefined && claimKey !== ownerKey && att.ref && !att.dataSent ? await ownerOf(a.store, att.ref.ref, blob) : undefined;
      let viaClaim = false;
      if (claim && claimed !== undefined && claimed === claimKey) {
        viaClaim = true;
        ownerKey = claimKey;
        linkType = claim.owner.type;
        path = claim.path;
        self = claim.isSelf;
      } else if (blob) {
        if (ownerKey && blob.owner === ownerKey) {
          let body: AsyncIterable<Buffer> | undefined;
          try {
            // Its first chunk checked before anything of it is written: a corrupt start gets a link (which refuses) instead.
            body = await firstBytes((await a.store.get(blob.id)).body);
          } catch (err) {
            const corrupt = integrityFailure(err);
            if (corrupt) a.corrupt?.(blob.id, corrupt.cause);
            else a.warn?.('stored content could not be opened: linked instead', blob.id);
          }
          if (body) {
            // Noted before the first byte: an answer cut short still served part of it.
            a.served?.(blob.id, ownerKey, blob.size);
            yield `${member('data')}"`;
            try {
              yield* base64Chunks(body, blob.size);
            } catch (err) {
              // Named for the log (the response is cut): which blob holds wrong bytes.
              const corrupt = integrityFailure(err);
              throw corrupt && !corrupt.blob ? blobUnreadable(`blob ${blob.id}: ${corrupt.cause}`) : err;
            }
            yield '"';
            streamed = true;
            report.inflated++;
            report.bytes += blob.size;
          }
        } else a.warn?.('stored content was not written for this resource: not served', blob.id);
      }
      let rest = att.rest;
      if (needsLink && !streamed) {
        if (!ownerKey) a.warn?.('an attachment of a resource without an id cannot be linked');
        else if (a.binaryRoot || a.hasUrl) {
          // Binary has no `url`, and an attachment's own `url` is the client's: the link goes in
          // `_data`, with the content's SHA-256 when it is stored, so a write that sends it back
          // takes back this content and no other (rewrite/externalize.ts relink).
          const ext = Array.isArray(rest?.['extension']) ? (rest['extension'] as unknown[]) : [];
          const url = a.binaryRoot && self ? a.link(ownerKey, undefined) : a.link(ownerKey, `${linkType}${path}`);
          const digest = att.ref ? [{ url: CONTENT_SHA256_EXTENSION, valueString: att.ref.ref.sha256 }] : [];
          rest = { ...rest, extension: [...ext, { url: CONTENT_URL_EXTENSION, valueUrl: url }, ...digest] };
          report.linked++;
        } else {
          const link = a.link(ownerKey, `${linkType}${path}`);
          // A claimed entry's content is linked through the entry, and such a link is checked
          // again when followed; a signed URL would not be: only the real owner's content gets one.
          const signed = att.ref && !viaClaim ? a.signedLink?.(ownerKey, att.ref.ref) : undefined;
          if (signed) {
            // A browser follows the signed URL; our own link, with the content's digest, rides in
            // `_data` so a write sending the resource back takes back this content (never the URL).
            yield `${member('url')}${JSON.stringify(signed)}`;
            const ext = Array.isArray(rest?.['extension']) ? (rest['extension'] as unknown[]) : [];
            rest = {
              ...rest,
              extension: [
                ...ext,
                { url: CONTENT_URL_EXTENSION, valueUrl: link },
                { url: CONTENT_SHA256_EXTENSION, valueString: att.ref!.ref.sha256 },
              ],
            };
          } else yield `${member('url')}${JSON.stringify(link)}`;
          report.linked++;
        }
      }
      if (rest && Object.keys(rest).length) yield `${member('_data')}${JSON.stringify(rest)}`;
    },
  };
}
