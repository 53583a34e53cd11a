import type { Transform } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import { NOT_ATTACHMENT } from '../fhir/attachment-kinds.js';
import { BLOB_EXTENSION_URL } from '../fhir/blob-reference.js';
import { SIGNED_FILE_URL_SCREEN } from '../fhir/content-link.js';
import type { JsonToken } from '../json/tokenizer.js';
import { WalkThrough } from '../json/walk-through.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';

/**
 * PATCH bodies (JSON Patch, and FHIRPath Patch as Parameters) pass through unchanged, but a patch
 * may not touch attachment members: `data`, `contentType`, `url` and their `_` elements. Those are
 * what the write rules check (allowed types, sniffed content, externalized data, our blob
 * reference), and a patch is applied by the upstream, after the gateway, where no check runs: a
 * patch setting `contentType: text/html` and `data` would be served as HTML. Content is changed by
 * an update or `$binary-access-write`, which are checked. Our extension URL is refused anywhere.
 */
export function patchGuard(opts: { readonly mayRead: boolean }): Transform {
  return new WalkThrough(new JsonWalker(new PatchGuard(opts.mayRead), patchWalk));
}

const patchWalk = {
  maxDepth: 128,
  maxKey: 1024,
  longKeys: 'cut' as const,
  // A PATCH body is itself bounded by externalize.minBytes: a held string is never larger.
  hold: { maxChars: 1024 * 1024, maxDepth: 0 },
  subject: 'the patch',
  forbid: { text: BLOB_EXTENSION_URL, error: () => new GatewayError('BAD_REQUEST', 'blob references are written by the gateway only') },
  screen: SIGNED_FILE_URL_SCREEN,
  fail: (problem: string, cause?: unknown) => new GatewayError('BAD_REQUEST', problem, { cause }),
};

/** Attachment members a patch may not set, name or reach, wherever they appear. */
const MEMBERS: ReadonlySet<string> = new Set(['data', '_data', 'contentType', '_contentType']);
/** Members only an Attachment has: refused even below a Signature or SampledData, whose `data` is their own. */
const ATTACHMENT_ONLY: ReadonlySet<string> = new Set(['contentType', '_contentType']);
/**
 * JSON Patch ops that carry a value from one place to another: an unchecked structure (a Signature
 * with `data`) could be moved into an attachment. FHIR clients patch by value; these are refused.
 */
const CARRYING_OPS: ReadonlySet<string> = new Set(['move', 'copy']);
/** FHIRPath Patch values of types whose `data` is not attachment content, so is never checked as such. */
const UNCHECKED_VALUES: ReadonlySet<string> = new Set(['valueAttachment', 'valueSignature', 'valueSampledData']);
/** Extension containers: their items' `url` is the extension's, not an Attachment's. */
const EXTENSIONS: ReadonlySet<string> = new Set(['extension', 'modifierExtension']);

interface Part {
  /** A FHIRPath Patch part's `name` (`type`, `path`, `name`, `value`, …). */
  name: string | undefined;
  /** Its `valueString`/`valueCode`. */
  text: string | undefined;
  /** A JSON Patch op's `path`, and its `value` when that is a string. */
  path?: string;
  value?: string;
}

/**
 * A conditional reference (`Patient?identifier=x`) is a search the server runs for the writer
 * (HAPI resolves them in any write); a patch, applied after the gateway, would carry it past the
 * search rules a create or update is held to (rewrite/externalize.ts collects those).
 */
function conditionalReference(): GatewayError {
  return new GatewayError(
    'BAD_REQUEST',
    'a patch may not set a conditional reference (Type?criteria): send the resource with PUT or POST, where it is authorized as the search it is',
  );
}

function refused(what: string): GatewayError {
  return new GatewayError(
    'BAD_REQUEST',
    `a patch may not change attachment ${what}: send the resource with PUT, or the content with $binary-access-write, where it is checked`,
  );
}

class PatchGuard implements WalkPolicy<Part> {
  /** `mayRead`: whether the caller may read the resource; a JSON Patch `test` reads it (its failure says what is there). */
  constructor(private readonly mayRead: boolean) {}

  open(): Part {
    return { name: undefined, text: undefined };
  }

  route(parent: Container<Part> | undefined, key: string | undefined, first: JsonToken): Route {
    if (key === undefined) return 'pass';
    // A value being added (JSON Patch `value`, FHIRPath Patch `value[x]`) that is or holds an Attachment.
    if (UNCHECKED_VALUES.has(key)) throw refused('values');
    if (ATTACHMENT_ONLY.has(key) || (MEMBERS.has(key) && !NOT_ATTACHMENT.has(parent?.name ?? ''))) throw refused(`members ('${key}')`);
    if (first.name !== 'startString') return 'pass';
    // JSON Patch ops and pointers, and FHIRPath Patch parts' names and texts.
    const read =
      key === 'op' ||
      key === 'path' ||
      key === 'from' ||
      key === 'name' ||
      key === 'valueString' ||
      key === 'valueCode' ||
      key === 'reference' ||
      key === 'value';
    return read ? 'hold' : 'pass';
  }

  held(parent: Container<Part> | undefined, key: string | undefined, v: unknown): void {
    if (parent === undefined || typeof v !== 'string') return;
    if (key === 'reference') {
      if (v.includes('?')) throw conditionalReference();
    } else if (key === 'value') parent.state.value = v;
    else if (key === 'op') this.checkOp(v);
    else if (key === 'path' || key === 'from') {
      checkPointer(v);
      if (key === 'path') parent.state.path = v;
    } else if (key === 'name') {
      // A complex value written as nested parts names its members: `{name: "contentType", …}`.
      if (MEMBERS.has(v) || v === 'url' || v === '_url') throw refused(`members ('${v}')`);
      parent.state.name = v;
    } else parent.state.text = v;
  }

  private checkOp(op: string): void {
    if (CARRYING_OPS.has(op))
      throw new GatewayError('BAD_REQUEST', `JSON Patch '${op}' is not accepted: patch by value (add, replace, remove)`);
    if (op === 'test' && !this.mayRead) {
      throw new GatewayError('INSUFFICIENT_SCOPE', "JSON Patch 'test' reads the resource: it needs read access to it");
    }
  }

  close(c: Container<Part>): void {
    const { name, text, path, value } = c.state;
    // `{op: replace, path: /subject/reference, value: "Patient?…"}`, in either member order.
    if (path !== undefined && value !== undefined && /\/reference$/.test(path) && value.includes('?')) throw conditionalReference();
    if (text === undefined) return;
    if (name === 'path') {
      // `where($this = 'guess')` applies or fails by what is there: like a JSON Patch test, a read.
      if (!this.mayRead && text.includes('(')) {
        throw new GatewayError(
          'INSUFFICIENT_SCOPE',
          'a FHIRPath Patch path with a function reads the resource: it needs read access to it',
        );
      }
      checkFhirPath(text);
    } else if (name === 'name' && (MEMBERS.has(text) || text === 'url' || text === '_url')) throw refused(`members ('${text}')`);
    // A Reference's `reference` named as the member added, or given as a part: by string, it could
    // be a conditional reference. A Reference goes in whole, as valueReference, where it is checked.
    else if ((name === 'name' && text === 'reference') || (name === 'reference' && text.includes('?'))) {
      throw new GatewayError('BAD_REQUEST', 'a FHIRPath Patch may not set a reference by its string: give the Reference as valueReference');
    }
  }
}

/** A JSON Patch pointer (RFC 6901): `/content/0/attachment/data` is refused; `/extension/0/url` is an extension's. */
function checkPointer(pointer: string): void {
  const steps = pointer
    .split('/')
    .slice(1)
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  steps.forEach((step, i) => {
    if (MEMBERS.has(step) && !NOT_ATTACHMENT.has(steps[i - 1] ?? '') && !NOT_ATTACHMENT.has(steps[i - 2] ?? '')) {
      throw refused(`members ('${step}')`);
    }
    // `url` at the root is a canonical resource's own; below an extension item, the extension's.
    if ((step === 'url' || step === '_url') && i > 0 && !EXTENSIONS.has(steps[i - 2] ?? '')) throw refused(`members ('${step}')`);
  });
}

/** A FHIRPath Patch `path`: any step naming an attachment member is refused. */
function checkFhirPath(path: string): void {
  // Delimited identifiers (`cont\entType`) and escapes spell names this split would not see.
  if (path.includes('`') || path.includes('\\'))
    throw new GatewayError('BAD_REQUEST', 'a FHIRPath Patch path may not use delimited identifiers or escapes');
  const steps = path.split(/[^A-Za-z0-9_]+/);
  for (const step of steps) if (MEMBERS.has(step)) throw refused(`members ('${step}')`);
  const last = steps.filter((s) => s.length > 0).at(-1);
  if (last === 'url' && steps.length > 2 && !EXTENSIONS.has(steps.at(-2) ?? '')) throw refused("members ('url')");
  // A Reference's string set by path could be a conditional reference; a valueReference is checked as one.
  if (last === 'reference') {
    throw new GatewayError('BAD_REQUEST', 'a FHIRPath Patch may not set a reference by its string: give the Reference as valueReference');
  }
}
