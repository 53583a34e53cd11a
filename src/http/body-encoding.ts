import { GatewayError } from '../errors/catalogue.js';

/**
 * Request bodies are only accepted unencoded (`Content-Encoding` absent or `identity`). The
 * gateway reads bodies as they arrive — size limits, attachment data lifted into the store,
 * PATCH, operation and Bundle bodies scanned — and none of that decodes: a gzip body would be
 * counted by its compressed size (4 kB on the wire can be 4 MiB decoded) and reach the upstream
 * encoded, never checked. Refused before anything of the body is read.
 */
export function refuseEncodedBody(contentEncoding: string | undefined, hasBody: boolean): void {
  if (!hasBody || contentEncoding === undefined) return;
  // A list (`identity, gzip`, or two headers Node joined) is refused unless every coding is
  // identity; codings are case-insensitive (RFC 9110 §8.4.1). An empty value is refused too.
  for (const coding of contentEncoding.split(',')) {
    if (coding.trim().toLowerCase() !== 'identity') {
      throw new GatewayError('UNSUPPORTED_ENCODING', 'send the body without Content-Encoding', {
        // RFC 9110 §15.5.16: a 415 caused by a content coding says which codings would do.
        headers: { 'accept-encoding': 'identity' },
      });
    }
  }
}
