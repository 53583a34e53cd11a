import type { Readable } from 'node:stream';
import { GatewayError } from '../errors/catalogue.js';
import { isStepName, type PathStep } from '../fhir/attachment-path.js';
import { findBlobRef, type BlobRef } from '../fhir/blob-reference.js';
import type { JsonToken } from '../json/tokenizer.js';
import { JsonWalker, type Container, type Route, type WalkPolicy } from '../json/walker.js';

/** More stored attachments than any resource the gateway wrote has: an answer past it is refused, not collected without end. */
export const MAX_STORED_REFS = 10_000;

/**
 * Where an attachment sits, one way however it is written: every step with an index, `[0]` for a
 * single element (FHIRPath's first match). `Binary.data` at a Binary's root is ''.
 */
export function canonicalSteps(steps: readonly PathStep[]): string {
  return steps.map((s) => `.${s.name}[${s.index ?? 0}]`).join('');
}

/** The same form for a container of a walked resource. */
function canonicalAt(c: Container<unknown>): string {
  let path = '';
  for (let x: Container<unknown> | undefined = c; x?.parent; x = x.parent) {
    const name = x.parent.kind === 'array' ? x.name : x.key;
    // A name no path step takes (`content[0].attachment` as one member), or an array in an array
    // (not FHIR): named so no link path can equal it.
    if (!isStepName(name) || (x.parent.kind === 'array' && x.parent.parent?.kind !== 'object')) return `!${path}`;
    if (x.parent.kind === 'array') {
      path = `.${name}[${x.index}]${path}`;
      x = x.parent;
    } else path = `.${name}[0]${path}`;
  }
  return path;
}

/**
 * Reads a resource as a stream and keeps only the gateway's references in it, by where they sit
 * (canonicalSteps): an update's own content links are resolved from one read of the current
 * version, however many links it sends. Inline data is skipped unread, so the read is bounded in
 * memory whatever the resource holds.
 */
export async function readStoredRefs(body: Readable): Promise<Map<string, BlobRef>> {
  const refs = new Map<string, BlobRef>();
  const policy: WalkPolicy<undefined> = {
    open: () => undefined,
    route(parent: Container<undefined> | undefined, key: string | undefined, first: JsonToken): Route {
      if (!parent) {
        if (first.name !== 'startObject') throw new GatewayError('UPSTREAM_INVALID', "the upstream's resource is not a JSON object");
        return 'pass';
      }
      if (key === '_data' && first.name === 'startObject') return 'hold';
      return first.name === 'startObject' || first.name === 'startArray' ? 'pass' : 'skip';
    },
    held(parent: Container<undefined> | undefined, _key: string | undefined, value: unknown): void {
      const ref = findBlobRef((value as { extension?: unknown }).extension);
      if (!ref || !parent) return;
      if (refs.size >= MAX_STORED_REFS)
        throw new GatewayError('UPSTREAM_INVALID', `the upstream's resource holds more than ${MAX_STORED_REFS} stored attachments`);
      refs.set(canonicalAt(parent), ref);
    },
  };
  const walker = new JsonWalker(policy, {
    maxDepth: 128,
    maxKey: 1024,
    longKeys: 'cut',
    hold: { maxChars: 64 * 1024, maxDepth: 16 },
    subject: "the upstream's resource",
    fail: (problem, cause) => new GatewayError('UPSTREAM_INVALID', problem, { cause }),
  });
  for await (const chunk of body) await walker.push(chunk as Buffer);
  await walker.end();
  return refs;
}
