/**
 * What one request did with stored content, noted by the binary plane as it happens (a blob
 * stored, linked, deleted, served raw or inflated into an answer) and read once by the audit trail
 * when the exchange ends (audit/trail.ts). Held on the request's context; most requests touch no
 * blob and never allocate the list.
 */
export interface BlobEvent {
  readonly action: 'read' | 'write' | 'link' | 'unlink' | 'delete' | 'quarantine' | 'release';
  readonly blob: string;
  /** Bytes served (read) or stored (write). */
  readonly bytes?: number;
  /** The resource the blob belongs to, when known (`Type/id`). */
  readonly resource?: string;
  /** A read sent inside FHIR JSON (base64 in an attachment), not as the content itself. */
  readonly inflated?: true;
  /** A write whose type a privileged override took past the allow-list (GraphQL fileTypeOverride). */
  readonly typeOverride?: string;
}

export interface BlobEventLog {
  blobEvents?: BlobEvent[];
  /** Events past MAX_BLOB_EVENTS. */
  blobEventsOmitted?: number;
  /** Attachment data the FHIR server itself held (inline, not stored here) sent in the answer: content read all the same. */
  inlineServed?: { count: number; bytes: number };
  /** Signed file URLs handed out (`$file-url`, `signedUrls.links`): credentials, so each is a grant on record. */
  urlGrants?: UrlGrant[];
  /** Grants past MAX_BLOB_EVENTS. */
  urlGrantsOmitted?: number;
}

/**
 * A signed file URL handed out: its name (a follow's record carries the same), what it is for,
 * until when, and who signs it (the gateway, or the store). Never the URL or its signature.
 */
export interface UrlGrant {
  /** urlIdOf(signature) for the gateway's URLs; of the whole URL for a store's. */
  readonly url: string;
  /** `Type/id`. */
  readonly resource: string;
  /** The blob a read URL names; absent for a write URL (its upload makes a new one). */
  readonly blob?: string;
  /** Write URLs: the attachment they upload to. */
  readonly path?: string;
  readonly permission: 'r' | 'w';
  readonly expiresAt: string;
  readonly via: 'gateway' | 'store';
  /** The stored policy it was signed under, and the client address or range it is bound to. */
  readonly policy?: string;
  readonly ip?: string;
  /** A link in an answer (`signedUrls.links`), not an answer of `$file-url`. */
  readonly link?: true;
}

/** Past this many, one request's further events are counted, not listed (a Bundle of thousands). */
export const MAX_BLOB_EVENTS = 200;

/** Inline attachment data (`bytes` decoded) went out in the answer. */
export function noteInline(log: BlobEventLog, bytes: number): void {
  const s = (log.inlineServed ??= { count: 0, bytes: 0 });
  s.count++;
  s.bytes += bytes;
}

export function noteBlob(log: BlobEventLog, event: BlobEvent): void {
  const list = (log.blobEvents ??= []);
  if (list.length < MAX_BLOB_EVENTS) list.push(event);
  else log.blobEventsOmitted = (log.blobEventsOmitted ?? 0) + 1;
}

/** A signed URL went out in the answer. */
export function noteUrlGrant(log: BlobEventLog, grant: UrlGrant): void {
  const list = (log.urlGrants ??= []);
  if (list.length < MAX_BLOB_EVENTS) list.push(grant);
  else log.urlGrantsOmitted = (log.urlGrantsOmitted ?? 0) + 1;
}
