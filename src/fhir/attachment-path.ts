import { GatewayError } from '../errors/catalogue.js';
import { NOT_ATTACHMENT } from './attachment-kinds.js';

/** One step of an attachment path: an element name and, for repeating elements, which one. */
export interface PathStep {
  readonly name: string;
  readonly index: number | undefined;
}

/**
 * As deep and as wide as the write side stores content: the rewrite engine walks 128 levels (an
 * element and its array are two), and takes data in a primitive's extension (`_status.extension[0]
 * .valueAttachment`) too. Every path a read links to must be one this accepts (attack
 * link-path-unaddressable), else the content could be reached by no one past the budget.
 */
const PATH = /^[A-Z][A-Za-z]{1,63}(\._?[a-z][A-Za-z0-9]{0,63}(\[\d{1,7}\])?){1,64}$/; // MAX_PATH_STEPS, STEP_NAME
const STEP = /^(_?[a-z][A-Za-z0-9]*)(?:\[(\d+)\])?$/;

/** One step's element name as the grammar takes it (`content`, `valueAttachment`, `_status`). */
const STEP_NAME = /^_?[a-z][A-Za-z0-9]{0,63}$/;
/** Steps a path may have. */
export const MAX_PATH_STEPS = 64;

/**
 * Whether a member name can be one step of a path: the write side stores content only where a
 * read can link to it and a link can bring it back, checked name by name — a member literally
 * named `content[0].attachment` must never pass as two steps (attack link-path-key-alias).
 */
export function isStepName(name: string | undefined): boolean {
  return name !== undefined && STEP_NAME.test(name);
}

/**
 * The `path` parameter of $binary-access-read/write: the simple FHIRPath subset the operations use
 * (`DocumentReference.content[1].attachment`, `Media.content`, `Binary.data`). Anything richer
 * (functions, filters) is refused rather than evaluated differently from the upstream.
 */
export function parseAttachmentPath(path: string | null, resourceType: string): readonly PathStep[] {
  if (path === null || path === '')
    throw new GatewayError('BAD_REQUEST', 'the path parameter is required, e.g. DocumentReference.content.attachment');
  if (!PATH.test(path))
    throw new GatewayError('BAD_REQUEST', 'path must be a simple element path such as DocumentReference.content[0].attachment');
  const [type, ...rest] = path.split('.');
  if (type !== resourceType) throw new GatewayError('BAD_REQUEST', `path must start with ${resourceType}`);
  if (resourceType === 'Binary' && path !== 'Binary.data') throw new GatewayError('BAD_REQUEST', 'the only path on Binary is Binary.data');
  return rest.map((s) => {
    const m = STEP.exec(s)!;
    // Signature and SampledData carry base64 `data` that is not attachment content: never
    // checked on write as content, so never served or written as content either.
    if (NOT_ATTACHMENT.has(m[1])) throw new GatewayError('BAD_REQUEST', `${m[1]} is not an attachment: it has no content to read or write`);
    return { name: m[1], index: m[2] === undefined ? undefined : Number(m[2]) };
  });
}

/**
 * The object a path names in a resource (an Attachment; for `Binary.data`, the Binary itself).
 * A repeating element without an index means its first item, as FHIRPath's first match does.
 */
export function resolveAttachment(resource: Record<string, unknown>, steps: readonly PathStep[]): Record<string, unknown> | undefined {
  if (steps.length === 1 && steps[0].name === 'data' && resource['resourceType'] === 'Binary') return resource;
  let cur: unknown = resource;
  for (const step of steps) {
    if (!cur || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    let v = (cur as Record<string, unknown>)[step.name];
    if (Array.isArray(v)) v = v[step.index ?? 0];
    else if (step.index !== undefined && step.index !== 0) return undefined;
    cur = v;
  }
  return cur && typeof cur === 'object' && !Array.isArray(cur) ? (cur as Record<string, unknown>) : undefined;
}
