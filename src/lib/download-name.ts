/**
 * Download names (`$file-url?filename=`, the files API's `filename`) and the Content-Disposition
 * that carries them. A name may be written in any script (a hospital's files are named after
 * patients and departments: `Müller Befund.pdf`, `検査結果.pdf`): letters, digits and combining
 * marks of any script, spaces and `._-()`. Nothing that would need quoting rules or could change
 * what the name looks like: no quotes, slashes or controls; no invisible characters (format
 * characters such as a right-to-left override, which makes `fdp.exe` read as `exe.pdf`, and
 * every other default-ignorable code point: variation selectors, fillers, zero-width marks); no
 * leading mark or run of more than three; no hidden (`.x`) or trailing-dot names; and a name in
 * a right-to-left script has at most one `.`, before an ASCII extension (the bidirectional
 * algorithm reorders dot-separated right-to-left parts: `א pdf.א.exe` can show as `exe.א.pdf א`).
 */
// The `v` flag (set subtraction) through the constructor: the compiler's target predates its syntax.
const CHARS = new RegExp(String.raw`^[[\p{L}\p{N}\p{M} ._\(\)\-]--\p{Default_Ignorable_Code_Point}]{1,128}$`, 'v');
const FIRST = /^[\p{L}\p{N}_(]/u;
const MARK_RUN = /\p{M}{4}/u;
const RIGHT_TO_LEFT =
  /[\p{Script_Extensions=Hebrew}\p{Script_Extensions=Arabic}\p{Script_Extensions=Syriac}\p{Script_Extensions=Thaana}\p{Script_Extensions=Nko}\p{Script_Extensions=Samaritan}\p{Script_Extensions=Mandaic}\p{Script_Extensions=Adlam}\p{Script_Extensions=Hanifi_Rohingya}\p{Script_Extensions=Yezidi}]/u;
const ONE_ASCII_EXTENSION = /^[^.]*(?:\.[A-Za-z0-9]{1,16})?$/;

export function isDownloadName(name: string): boolean {
  return (
    CHARS.test(name) &&
    FIRST.test(name) &&
    !name.endsWith('.') &&
    !name.endsWith(' ') &&
    !MARK_RUN.test(name) &&
    (!RIGHT_TO_LEFT.test(name) || ONE_ASCII_EXTENSION.test(name))
  );
}

/** What a refused name is told, naming its parameter. */
export function downloadNameRule(param: string): string {
  return (
    `${param} may hold letters and digits (any script), spaces, '.', '_', '-', '(' and ')', at most 128 characters, ` +
    "starting with a letter, digit, '_' or '(' and not ending with a space or '.'; no invisible characters; " +
    "a right-to-left name has at most one '.', before an ASCII extension"
  );
}

const ASCII = /^[\x20-\x7e]*$/;
const FALLBACK_UNSAFE = /[^A-Za-z0-9 ._()-]/g;

/**
 * `attachment` or `inline`, with the name: as `filename="…"` when it is ASCII; otherwise as RFC
 * 6266's `filename*=UTF-8''…` (RFC 8187 percent-encoding), which browsers prefer, after an ASCII
 * `filename` for clients that know only that one (accents dropped, anything else `_`, at most 128
 * characters: compatibility decomposition can lengthen a name many times). The header stays ASCII
 * either way, so a store's presigned URL (S3's response-content-disposition, Azure's rscd) can pin
 * it too. `name` must be a download name (isDownloadName), or one stored under the older rule.
 */
export function contentDisposition(kind: 'attachment' | 'inline', name: string | undefined): string {
  if (name === undefined) return kind;
  if (ASCII.test(name)) return `${kind}; filename="${name}"`;
  const fallback = name.normalize('NFKD').replace(/\p{M}/gu, '').replace(FALLBACK_UNSAFE, '_').slice(0, 128);
  return `${kind}; filename="${fallback}"; filename*=UTF-8''${rfc8187(name)}`;
}

/** RFC 8187's value-chars: encodeURIComponent leaves `'()*!~` as they are; of those only `!~` are attr-chars. */
function rfc8187(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
