/** A search's parameters as the authorization decisions see them. */

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
 * The search part of a conditional criteria string: `If-None-Exist` and `ifNoneExist` carry
 * `identifier=x`, and some clients send `Patient?identifier=x` or `?identifier=x` (HAPI accepts all three).
 */
export function criteriaQuery(criteria: string): string {
  const q = criteria.indexOf('?');
  return q === -1 ? criteria : criteria.slice(q + 1);
}
