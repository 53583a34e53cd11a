/**
 * The syntax of a blob id: opaque and URL-safe, made by the store (128 random bits, hex), and
 * carried in the reference the upstream keeps. A reference whose id does not have it is never
 * followed; a store never looks one up.
 */
export const BLOB_ID = /^[a-z0-9-]{1,64}$/;

export function isBlobId(id: string): boolean {
  return BLOB_ID.test(id);
}
