import { randomBytes } from 'node:crypto';

/** A PDF signature followed by random bytes: file-type recognises it as application/pdf. */
export const PDF = (n: number): Buffer => Buffer.concat([Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'), randomBytes(n)]);
// A real 1×1 PNG: file-type walks its chunks, so a signature alone is not enough.
export const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
