/**
 * Download names (`$file-url?filename=`, the files API's `filename`) and the Content-Disposition
 * that carries them. A name may be written in any script (a hospital's files are named after
 * patients and departments: `Müller Befund.pdf`, `検査結果.pdf`): letters, digits and combining
 * marks of any script, spaces and `._-()`. Nothing that would need quoting rules or could change
 * what the name looks like: no quotes, slashes, controls, or format characters (a right-to-left
 * override makes `fdp.exe` read as `exe.pdf`).
 */
export const DOWNLOAD_NAME = /^[\p{L}\p{N}\p{M} ._()-]{1,128}$/u;

/** What a refused name is told, naming its parameter. */
export function downloadNameRule(param: string): string {
  return `${param} may hold letters and digits (any script), spaces, '.', '_', '-', '(' and ')', at most 128 characters`;
}

const ASCII = /^[\x20-\x7e]*$/;

/**
 * `attachment` or `inline`, with the name: as `filename="…"` when it is ASCII; otherwise as RFC
 * 6266's `filename*=UTF-8''…` (RFC 8187 percent-encoding), which browsers prefer, after an ASCII
 * `filename` for clients that know only that one (accents dropped, other characters `_`). The
 * header stays ASCII either way, so a store's presigned URL (S3's response-content-disposition,
 * Azure's rscd) can pin it too. `name` must match DOWNLOAD_NAME.
 */
export function contentDisposition(kind: 'attachment' | 'inline', name: string | undefined): string {
  if (name === undefined) return kind;
  if (ASCII.test(name)) return `${kind}; filename="${name}"`;
  const fallback = name
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .replace(/[^\x20-\x7e]/g, '_');
  return `${kind}; filename="${fallback}"; filename*=UTF-8''${rfc8187(name)}`;
}

/** RFC 8187's value-chars: encodeURIComponent leaves `'()*!~` as they are; of those only `!~` are attr-chars. */
function rfc8187(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
