import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import { PURPOSE } from '../storage/meta.js';

/** Past this, the header is refused unread: it holds one short value. */
const MAX_CHARS = 1024;
/** The keys X-File-Metadata may hold; any other is refused, never silently dropped. */
const KEYS: ReadonlySet<string> = new Set(['purpose']);

/**
 * The upload's purpose, from seed 000's `X-File-Metadata: {"purpose":"patient_consent"}`:
 * recorded with every blob the request stores (BlobInfo.purpose), matched by retention classes,
 * returned by the GraphQL `file` query and written in audit records. Read before any byte of the
 * body is stored, so a malformed header refuses the write whole instead of storing blobs without
 * it: at most 1 KiB, a JSON object with no key but `purpose`, the purpose one of `purposes` when
 * the policy lists them (`content.purposes`).
 */
export function uploadPurpose(headers: IncomingHttpHeaders, purposes: readonly string[] = []): string | undefined {
  const raw = headers['x-file-metadata'];
  if (raw === undefined) return undefined;
  if ((Array.isArray(raw) ? raw.join(',') : raw).length > MAX_CHARS)
    throw new GatewayError('BAD_REQUEST', `X-File-Metadata is longer than ${MAX_CHARS} characters`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Array.isArray(raw) ? raw.join(',') : raw);
  } catch {
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata is not a JSON object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata is not a JSON object');
  const unknown = Object.keys(parsed).find((k) => !KEYS.has(k));
  if (unknown !== undefined)
    throw new GatewayError('BAD_REQUEST', `X-File-Metadata has no key '${unknown.slice(0, 32)}' (it holds: purpose)`);
  const purpose = (parsed as { purpose?: unknown }).purpose;
  if (purpose === undefined) return undefined;
  if (typeof purpose !== 'string' || !PURPOSE.test(purpose))
    throw new GatewayError('BAD_REQUEST', 'X-File-Metadata purpose must be 1 to 64 letters, digits or . _ : -');
  if (purposes.length > 0 && !purposes.includes(purpose))
    throw new GatewayError(
      'BAD_REQUEST',
      `X-File-Metadata purpose '${purpose}' is not one of content.purposes (${purposes.join(', ').slice(0, 200)})`,
    );
  return purpose;
}
