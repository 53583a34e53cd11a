import { GatewayError } from '../errors/catalogue.js';
import { TextScreen } from '../json/text-screen.js';

/**
 * The gateway's own links to stored content: what a read answers in place of attachment data it
 * does not inline (`_inflate=false`, a rule with inflation off, past the response budget). An
 * attachment's `url` names the instance's `$binary-access-read` with the attachment's path; a
 * Binary (which has no `url` element) carries its own URL in a `_data` extension.
 */
export const CONTENT_URL_EXTENSION = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-url';
/** Beside it, the linked content's SHA-256 (hex): which content the link meant, whatever the resource holds by then. */
export const CONTENT_SHA256_EXTENSION = 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-sha256';

const READ = '/$binary-access-read?path=';
const OWNER = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})$/;

/** The link to the content at `path` of `owner` (`Type/id`); without a path, the owner itself (a Binary). */
export function contentLink(base: string, owner: string, path: string | undefined): string {
  return path === undefined ? `${base}/${owner}` : `${base}/${owner}${READ}${encodeURIComponent(path)}`;
}

/** The path below the FHIR base every signed file URL has: `_file/{type}/{id}/{blob}` (docs/signed-urls.md). */
export const FILE_SEGMENT = '_file';

/** A signed file URL of this gateway (`{base}/_file/…`, docs/signed-urls.md): a credential, never stored in a resource. */
export function isSignedFileUrl(base: string, url: string): boolean {
  return url.startsWith(`${base}/${FILE_SEGMENT}/`);
}

/**
 * What every signed file URL holds, however its base is spelled (scheme and host case, a port,
 * another host name of the gateway): `/_file/` and, after it in the same token, its query (the
 * gateway serves `_file` only by that exact path and only with its signature). A string in a
 * written body holding both is refused (json/walk-policy.ts `screen`), wherever it is — an
 * extension's `valueUrl`, a note, a narrative link, a patch value, an operation's parameter — so
 * a credential is never stored where everyone who may read the resource would get it. Attachment
 * `url`s the rewrite engine takes back or drops (rewrite/externalize.ts) are checked there.
 */
export const SIGNED_FILE_URL_SCREEN = {
  parts: [`/${FILE_SEGMENT}/`, '?'] as const,
  /** What ends a URL written in text: white space, quotes, angle brackets. */
  breaks: /[\s"'<>`]/,
  error: (): GatewayError =>
    new GatewayError(
      'BAD_REQUEST',
      'the body holds a signed file URL of this gateway (a credential, or text shaped like one: /_file/…?…): it is never stored in a resource; link the content with $binary-access-read, or ask $file-url when it is read',
    ),
};

/** Whether `text` holds something shaped like a signed file URL (SIGNED_FILE_URL_SCREEN). */
export function holdsSignedFileUrl(text: string): boolean {
  return TextScreen.holds(SIGNED_FILE_URL_SCREEN.parts, SIGNED_FILE_URL_SCREEN.breaks, text);
}

/** What a link of contentLink()'s shape names, or undefined for any other URL. */
export function parseContentLink(base: string, url: string): { readonly owner: string; readonly path: string | undefined } | undefined {
  if (!url.startsWith(`${base}/`)) return undefined;
  const rest = url.slice(base.length + 1);
  const at = rest.indexOf(READ);
  const owner = at < 0 ? rest : rest.slice(0, at);
  if (!OWNER.test(owner)) return undefined;
  if (at < 0) return owner.startsWith('Binary/') ? { owner, path: undefined } : undefined;
  let path: string;
  try {
    path = decodeURIComponent(rest.slice(at + READ.length));
  } catch {
    return undefined;
  }
  return path.includes('&') || path.includes('#') ? undefined : { owner, path };
}
