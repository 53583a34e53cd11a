/**
 * The pieces the classifier (classify.ts, classify-instance.ts) is built from: the checks of one
 * path segment (resource type, id, operation name) and the refusals it makes.
 */
import { GatewayError } from '../errors/catalogue.js';
import { RESOURCE_TYPES, RESOURCE_TYPES_BY_LOWERCASE } from './resource-types.js';
import { clip, DOT } from './target-scan.js';

/** Reserved path words, used only to refuse wrong-case spellings of them (`METADATA`, `_History`). */
const KEYWORDS: ReadonlySet<string> = new Set(['metadata', '_history', '_search']);

// Allow lists for 405 responses (RFC 9110 §15.5.6: a 405 MUST carry Allow). Also the documentation
// of which methods each shape accepts.
export const ALLOW = {
  read: ['GET', 'HEAD'],
  operation: ['GET', 'HEAD', 'POST'],
  post: ['POST'],
  baseWithQuery: ['GET', 'HEAD', 'POST'],
  type: ['GET', 'HEAD', 'POST'],
  typeWithQuery: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
  instance: ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE'],
} as const;

/** HEAD is answered like GET (RFC 9110 §9.3.2), so it classifies like GET; the method is kept. */
export function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}

/**
 * Returns `seg` if it is exactly an R4 resource type, undefined if it is not one in any case, and
 * refuses a wrong-case spelling (or a wrong-case reserved word such as `METADATA`): a
 * case-insensitive upstream would serve `patient` as `Patient` while our policy saw something else.
 */
export function resourceType(seg: string): string | undefined {
  if (RESOURCE_TYPES.has(seg)) return seg;
  const lower = seg.toLowerCase();
  const canonical = RESOURCE_TYPES_BY_LOWERCASE.get(lower);
  if (canonical !== undefined) {
    throw new GatewayError('AMBIGUOUS_PATH', `resource type '${clip(seg)}' must be spelled '${canonical}'`);
  }
  if (KEYWORDS.has(lower) && seg !== lower) {
    throw new GatewayError('AMBIGUOUS_PATH', `'${clip(seg)}' must be spelled '${lower}'`);
  }
  return undefined;
}

/** FHIR id / version id: `[A-Za-z0-9\-\.]{1,64}` (R4 datatypes.html#id), never '.' or '..'. */
export function fhirId(seg: string, what: string): string {
  const len = seg.length;
  let ok = len >= 1 && len <= 64;
  for (let i = 0; ok && i < len; i++) {
    const c = seg.charCodeAt(i);
    ok =
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x30 && c <= 0x39) || // 0-9
      c === 0x2d || // -
      c === DOT;
  }
  // '.' and '..' are already refused as dot segments by scanPath; kept here so this function is
  // correct on its own.
  if (!ok || seg === '.' || seg === '..') {
    throw new GatewayError('AMBIGUOUS_PATH', `invalid ${what} '${clip(seg)}' (FHIR ids are [A-Za-z0-9-.]{1,64})`);
  }
  return seg;
}

/** `$name` with name `[a-zA-Z][a-zA-Z0-9\-_]*` (R4 operationdefinition.html, OperationDefinition.code). Returns the name without '$'. */
export function operationName(seg: string): string {
  const len = seg.length;
  let ok = len >= 2;
  for (let i = 1; ok && i < len; i++) {
    const c = seg.charCodeAt(i);
    const alpha = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
    ok = i === 1 ? alpha : alpha || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
  }
  if (!ok) throw new GatewayError('AMBIGUOUS_PATH', `invalid operation name '${clip(seg)}'`);
  return seg.slice(1);
}

export function methodNotAllowed(method: string, shape: string, allow: readonly string[], entry: boolean): GatewayError {
  const detail = `${clip(method)} is not supported on ${shape}`;
  return entry
    ? new GatewayError('METHOD_NOT_ALLOWED', detail)
    : new GatewayError('METHOD_NOT_ALLOWED', detail, { headers: { Allow: allow.join(', ') } });
}

export function notFound(): GatewayError {
  return new GatewayError('NOT_FOUND', 'no FHIR interaction has this path shape');
}
