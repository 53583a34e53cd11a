import type { BlobInfo, PutMeta } from './blob-store.js';
import type { Digest } from './digest.js';
import { newInfo } from './meta.js';

/**
 * What every driver's put does the same way: the abort error (the shape of Node's own, with the
 * caller's reason as its cause) and the last step, the record.
 */

export function abortError(signal: AbortSignal | undefined): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal?.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/**
 * Once every byte is stored: the record, which says they are all there. An abort that came
 * meanwhile still wins, before and after it (the caller then removes both).
 */
export async function finishPut(
  id: string,
  digest: Digest,
  meta: PutMeta,
  signal: AbortSignal | undefined,
  writeRecord: (info: BlobInfo) => Promise<void>,
): Promise<BlobInfo> {
  if (signal?.aborted) throw abortError(signal);
  const info = newInfo(id, digest, meta);
  await writeRecord(info);
  if (signal?.aborted) throw abortError(signal);
  return info;
}
