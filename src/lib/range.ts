/** Inclusive byte range, as in HTTP `Range: bytes=start-end`; both already resolved against the size. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * One `Range: bytes=…` against a known size (RFC 9110 §14.2). Returns the resolved inclusive range,
 * 'unsatisfiable' (416), or undefined when the whole content should be sent: no Range, a unit
 * other than bytes, several ranges (multipart/byteranges is not offered; ignoring Range is allowed),
 * or a malformed header (which the RFC says to ignore).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    // Suffix: the last N bytes.
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (!Number.isSafeInteger(start) || (b !== '' && Number(b) < start)) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** `If-None-Match` against an ETag, weak comparison (RFC 9110 §13.1.2), `*` included. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  const opaque = (t: string) => t.trim().replace(/^W\//, '');
  const mine = opaque(etag);
  return ifNoneMatch.split(',').some((t) => t.trim() === '*' || opaque(t) === mine);
}
