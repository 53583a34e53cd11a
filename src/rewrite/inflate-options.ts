import type { BlobStore } from '../storage/blob-store.js';
import type { EntryGuard } from './params.js';

export interface InflateOptions {
  readonly store: BlobStore;
  /** Decoded bytes of attachment data the whole response may carry, stored or inline. */
  readonly maxBytes: number;
  /** Whether stored content is put back inline at all; false: every stored attachment gets a link. */
  readonly inflate: boolean;
  /**
   * Who owns the attachments below the document: `root` (a read: the resource itself), `entries`
   * (a search, history or batch/transaction answer: each `entry[i].resource`, never the Bundle,
   * which no one stored), or `by-type` (an operation's answer: entries of a Bundle whose type,
   * read before its entries, says it was assembled, and Parameters' resources; otherwise the root).
   */
  readonly owners: 'root' | 'entries' | 'by-type';
  /** Where inline values too large to decide on in memory are kept meanwhile. */
  readonly spoolDir: string;
  /** The URL a client follows for an attachment's content: `owner` is `Type/id`; `path` the attachment's FHIRPath, or undefined for Binary.data. */
  link(owner: string, path: string | undefined): string;
  /**
   * A signed file URL for stored content `blob` of `owner` (`signedUrls.links`), given in an
   * attachment's `url` in place of the link above (which then goes in `_data`, for a write that
   * sends the resource back); undefined where the caller may not have one.
   */
  signedLink?(owner: string, blob: { readonly id: string; readonly sha256: string }): string | undefined;
  /** Absolute URLs the upstream wrote (fullUrl, Bundle.link.url, response.location), as the client must see them. */
  publicUrl(url: string): string;
  /** Content that could not be served as the resource says (for the log: never content, never URLs). */
  warn?(what: string, blob?: string): void;
  /** Stored content that failed its digest, found before any of it was sent: it gets a link instead (logged at error). */
  corrupt?(blob: string, cause: string): void;
  /** Stored content about to be sent inside the answer (for the audit trail): the blob, its owner, its bytes. */
  served?(blob: string, owner: string, bytes: number): void;
  /** Attachment data the answer carried inline (not from the store), sent on: its decoded bytes (for the audit trail). */
  servedInline?(bytes: number): void;
  /**
   * Whether the caller may read resources of `type` (undefined: not known yet). Stored content is
   * inflated only into resources the caller may read; the others get a link, which checks on its own.
   */
  mayRead?(type: string | undefined): boolean;
  /** Entries of a batch/transaction answer whose `resource` is left out (RewriteParams.withheldEntries). */
  readonly withheldEntries?: ReadonlySet<number>;
  /** Entries of a Bundle answer the request is not entitled to are dropped (RewriteParams.guard; rewrite/entry-gate.ts). */
  readonly guard?: EntryGuard;
  /** The Bundles nested in a batch/transaction answer's entries, guarded each by its request entry's guard (RewriteParams.entryGuards). */
  readonly entryGuards?: ReadonlyMap<number, EntryGuard>;
}
