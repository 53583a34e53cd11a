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
}

export interface BlobEventLog {
  blobEvents?: BlobEvent[];
  /** Events past MAX_BLOB_EVENTS. */
  blobEventsOmitted?: number;
  /** Attachment data the FHIR server itself held (inline, not stored here) sent in the answer: content read all the same. */
  inlineServed?: { count: number; bytes: number };
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
