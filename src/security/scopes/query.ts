/** The query as the scope decisions see it. */

import type { Interaction } from '../../fhir/interaction.js';
import type { SmartGrantContext } from './types.js';

export interface QueryParam {
  /** The decoded name, including any `:modifier`. */
  readonly name: string;
  /** The name up to the first `:` or `.` (the parameter a modifier or chain applies to). */
  readonly base: string;
  readonly value: string;
}

export function parseQuery(query: string): QueryParam[] {
  const out: QueryParam[] = [];
  if (query.length === 0) return out;
  // URLSearchParams decodes percent-escapes and `+` the way servlet containers and Node servers
  // do, so `pati%65nt` is compared as `patient`. Names are compared case-sensitively (FHIR search
  // parameter names are case-sensitive).
  // ';' separates parameters too for the classifier (old CGI convention some servers still
  // follow): split on it here as well, or a parameter hidden behind ';' (`code=x;_include=…`)
  // would be seen by such an upstream and not by us. Seeing more parameters only refuses more.
  for (const [name, value] of new URLSearchParams(query.replaceAll(';', '&'))) {
    const cut = name.search(/[:.]/);
    out.push({ name, base: cut === -1 ? name : name.slice(0, cut), value });
  }
  return out;
}

/**
 * Search parameters that make a response carry, or depend on, resources other than the requested
 * type. `_include`, `_revinclude` and `_type` are the ones the SMART spec calls out (a search on T
 * must not return U without a grant on U); `_has`, chained parameters (`subject.name`,
 * `subject:Patient.name`), `_filter` (which can express both), `_query` (server-defined), and
 * `_contained`/`_containedType` (which return container resources) are refused on the same footing.
 */
export const CROSS_TYPE_PARAMS: ReadonlySet<string> = new Set([
  '_include',
  '_revinclude',
  '_type',
  '_has',
  '_filter',
  '_query',
  '_contained',
  '_containedType',
]);

export function reachesOtherTypes(request: Interaction, params: readonly QueryParam[], ctx: SmartGrantContext): boolean {
  if (params.some((p) => CROSS_TYPE_PARAMS.has(p.base) || p.name.includes('.'))) return true;
  // A form-encoded POST _search body carries parameters we do not see here (unless the caller
  // merged them into the query), so assume the worst about them.
  const m = String(request.method).toUpperCase();
  return request.kind === 'search' && m !== 'GET' && m !== 'HEAD' && ctx.searchBodyInQuery !== true;
}
