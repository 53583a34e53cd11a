/**
 * Media types as the content checks compare them: the essence (`type/subtype`, lowercase, no
 * parameters), a few registered aliases folded together, and `type/*` patterns for allow-lists.
 */

/** Names that mean the same format; file-type reports the right-hand one. */
const ALIASES: Readonly<Record<string, string>> = {
  'image/dicom': 'application/dicom',
  'application/dicom': 'application/dicom',
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
  'audio/mp3': 'audio/mpeg',
  'audio/x-wav': 'audio/wav',
  'audio/wave': 'audio/wav',
  'audio/vnd.wave': 'audio/wav',
  'application/x-pdf': 'application/pdf',
  'image/x-png': 'image/png',
};

const TOKEN = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;

/** `Text/Plain; charset=utf-8` → `text/plain`; undefined when it is not a media type at all. */
export function essence(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const e = contentType.split(';', 1)[0].trim().toLowerCase();
  return TOKEN.test(e) ? e : undefined;
}

export function canonical(type: string): string {
  return ALIASES[type] ?? type;
}

export function sameType(a: string, b: string): boolean {
  return canonical(a) === canonical(b);
}

/**
 * Whether `type` matches one of `patterns` (`image/*` matches any image; aliases count). A
 * wildcard never matches a structured-syntax subtype (`image/x+json`, `image/svg+xml`): those are
 * text without a signature, so `image/*` would otherwise admit any JSON or XML (HTML included).
 * Such a type must be listed by name.
 */
export function allowed(type: string, patterns: readonly string[]): boolean {
  const t = canonical(type);
  return patterns.some((p) => {
    if (p.endsWith('/*')) return !type.includes('+') && (type.startsWith(p.slice(0, -1)) || t.startsWith(p.slice(0, -1)));
    return canonical(p) === t;
  });
}

/** Text formats with no signature: checked as UTF-8 without NUL instead of by magic bytes. */
export function isTextual(type: string): boolean {
  return (
    type.startsWith('text/') ||
    type === 'application/json' ||
    type.endsWith('+json') ||
    type === 'application/xml' ||
    type.endsWith('+xml') ||
    type === 'application/javascript'
  );
}

/**
 * Types a browser may execute or render with script (HTML, SVG, XML, JavaScript): always served
 * as a download, never inline, whatever the client asked for.
 */
export function isActiveContent(type: string): boolean {
  return (
    type === 'text/html' ||
    type === 'application/xhtml+xml' ||
    type === 'image/svg+xml' ||
    type === 'text/xml' ||
    type === 'application/xml' ||
    type === 'text/xsl' ||
    type.endsWith('+xml') ||
    JAVASCRIPT.has(type) ||
    /^text\/javascript1\.[0-5]$/.test(type)
  );
}

/** WHATWG's JavaScript MIME type essences (https://mimesniff.spec.whatwg.org/#javascript-mime-type): a browser runs any of them as a script. */
const JAVASCRIPT: ReadonlySet<string> = new Set([
  'application/ecmascript',
  'application/javascript',
  'application/x-ecmascript',
  'application/x-javascript',
  'text/ecmascript',
  'text/javascript',
  'text/jscript',
  'text/livescript',
  'text/x-ecmascript',
  'text/x-javascript',
]);
