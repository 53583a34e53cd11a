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

/** A signed file URL of this gateway (`{base}/_file/…`, docs/signed-urls.md): a credential, never stored in a resource. */
export function isSignedFileUrl(base: string, url: string): boolean {
  return url.startsWith(`${base}/_file/`);
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
