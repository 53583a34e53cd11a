import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { PURPOSE } from '../storage/meta.js';

/**
 * The upload's purpose, from seed 000's `X-File-Metadata: {"purpose":"patient_consent"}`:
 * recorded with every blob the request stores (BlobInfo.purpose), matched by retention classes
 * and written in audit records. Read before any byte of the body is stored, so a malformed header
 * refuses the write whole instead of storing blobs without it. Other keys are ignored.
 */
export function uploadPurpose(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers['x-file-metadata'];
  if (raw === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Array.isArray(raw) ? raw.join(',') : raw);
  } catch {
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata is not a JSON object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata is not a JSON object');
  const purpose = (parsed as { purpose?: unknown }).purpose;
  if (purpose === undefined) return undefined;
  if (typeof purpose !== 'string' || !PURPOSE.test(purpose))
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata purpose must be 1 to 64 letters, digits or . _ : -');
  return purpose;
}
