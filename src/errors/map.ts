import { GatewayError, isGatewayError } from './catalogue.js';

/**
 * The one mapping from what failed to what the client is told. A GatewayError says it already;
 * anything else is named by where it came from, keeping the original as `cause` (for the log,
 * never for the client).
 */

/** Network errors that mean "could not talk to the upstream" (anything else from a socket is too, but these are the usual ones). */
const TIMED_OUT = new Set(['ETIMEDOUT', 'ESOCKETTIMEDOUT']);

/** Anything thrown, as the client sees it: unknown errors are INTERNAL (no stack leaves). */
export function toGatewayError(err: unknown): GatewayError {
  return isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
}

/** A failure of the object store (writing, or reading metadata): the store is unavailable. */
export function storeFailure(err: unknown): GatewayError {
  if (isGatewayError(err)) return err;
  return new GatewayError('STORAGE_UNAVAILABLE', undefined, { cause: err });
}

/**
 * A failure opening stored content: a file gone from under its record is content that cannot be
 * read (BLOB_UNREADABLE, not retried); anything else is the store being unavailable.
 */
export function contentFailure(err: unknown): GatewayError {
  if ((err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' && !isGatewayError(err)) {
    return new GatewayError('BLOB_UNREADABLE', 'the stored content is missing', { cause: err });
  }
  return storeFailure(err);
}

/** A failure talking to the upstream FHIR server: it did not answer in time, or could not be reached. */
export function upstreamFailure(err: unknown): GatewayError {
  if (isGatewayError(err)) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code !== undefined && TIMED_OUT.has(code)) return new GatewayError('UPSTREAM_TIMEOUT', undefined, { cause: err });
  return new GatewayError('UPSTREAM_UNAVAILABLE', undefined, { cause: err });
}
