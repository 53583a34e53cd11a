import type { Container } from '../json/walker.js';

/**
 * Where a container sits in a FHIR JSON document, as the rewrite engine and the Bundle readers
 * ask it. Positions are decided from the document's shape alone, never from what it says of itself.
 */

/** A resource: the document itself, a contained one, or the `resource` of an entry or parameter, or an `outcome`. */
export function isResourceRoot(c: Container<unknown>): boolean {
  const p = c.parent;
  if (!p) return true;
  return p.kind === 'array' ? c.name === 'contained' : c.key === 'resource' || c.key === 'outcome';
}

/**
 * For `{top}.{list}[i].resource` (an entry's or a parameter's resource, directly below the
 * document): the name of the list. Undefined anywhere else.
 */
export function listOfResource(c: Container<unknown>): string | undefined {
  const item = c.parent;
  const list = item?.parent;
  if (c.key !== 'resource' || item?.kind !== 'object' || list?.kind !== 'array' || list.depth !== 2) return undefined;
  return list.key;
}

/** The index of the top-level `entry[i]` that `c` is in (or is), if any. */
export function bundleEntryOf(c: Container<unknown> | undefined): number | undefined {
  for (let x = c; x; x = x.parent) {
    const p = x.parent;
    if (p?.kind === 'array' && p.depth === 2 && p.key === 'entry') return x.kind === 'object' ? x.index : undefined;
  }
  return undefined;
}
