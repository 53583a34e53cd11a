// What a store's refusals look like: one catalogue code (BLOB_UNREADABLE), said differently for a
// blob that is not there and one that cannot be read as stored; why, only in the cause.
export const MISSING = { code: 'BLOB_UNREADABLE', message: /stored content is missing/ } as const;
export const UNREADABLE = { code: 'BLOB_UNREADABLE', message: /stored content cannot be read/ } as const;

/** Unreadable, for the reason `why` (the cause's message, which only the log sees). */
export function unreadable(why: string | RegExp): { code: 'BLOB_UNREADABLE'; cause: { message: string | RegExp } } {
  return { code: 'BLOB_UNREADABLE', cause: { message: why } };
}
