/** Parsing scope claims: SMART v1/v2 scopes and literal ones. */

import type { ScopeSet, SmartContext, SmartScope } from './types.js';

/**
 * RFC 6749 §3.3: scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E. A token with any other
 * character (tabs, non-ASCII, quotes, backslashes) is dropped entirely rather than split or
 * repaired: a repair could turn junk into a grant.
 */
export const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/** `(patient|user|system)/(type).(permissions)[?restrictions]`, split only; parts validated below. */
export const SMART_SHAPE = /^(patient|user|system)\/([^./?]+)\.([^.?]*)(?:\?(.*))?$/;

/** v2: a non-empty subset of `cruds` in that order, no repeats (the empty match is rejected separately). */
export const V2_PERMISSIONS = /^c?r?u?d?s?$/;

export const V1_PERMISSIONS: Readonly<Record<string, string>> = { read: 'rs', write: 'cud', '*': 'cruds' };

/** One `name=value` pair; no empty names or values, no `=` inside a value. */
export const RESTRICTION_SHAPE = /^[^&=]+=[^&=]+(?:&[^&=]+=[^&=]+)*$/;

/**
 * Restriction names are plain FHIR search parameter codes (optionally `_`-prefixed, like `_tag`).
 * Modifiers (`:not`) and chains (`.`) in a scope are refused at parse time: their meaning as an
 * "exact match" restriction is not something we can enforce on the query.
 */
export const RESTRICTION_NAME = /^_?[A-Za-z][A-Za-z0-9-]*$/;

/** FHIR id syntax (http://hl7.org/fhir/R4/datatypes.html#id). */
export const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;

/**
 * Collects scopes from `scope` (space-separated string, RFC 8693 / SMART) and `scp` (array of
 * strings, or a space-separated string, as some servers emit). When both are present the union is
 * used: each is a statement by the same issuer about the same token. Parsing is eager so the
 * result can be cached per token.
 */
export function parseScopes(claims: Record<string, unknown>): ScopeSet {
  const raw = new Set<string>();
  const c: Record<string, unknown> = claims !== null && typeof claims === 'object' ? claims : {};
  addSpaceSeparated(raw, c['scope']);
  const scp = c['scp'];
  if (Array.isArray(scp)) {
    // Each array element is one scope; an element containing a space is malformed and is not
    // split into several scopes.
    for (const item of scp) {
      if (typeof item === 'string' && SCOPE_TOKEN.test(item)) raw.add(item);
    }
  } else {
    addSpaceSeparated(raw, scp);
  }
  const smart: SmartScope[] = [];
  for (const s of raw) {
    const parsed = parseSmartScope(s);
    if (parsed) smart.push(parsed);
  }
  return Object.freeze({ raw, smart: Object.freeze(smart) });
}

export function addSpaceSeparated(into: Set<string>, value: unknown): void {
  if (typeof value !== 'string') return;
  // RFC 6749 §3.3: the delimiter is the space character only. Repeated spaces are tolerated.
  for (const token of value.split(' ')) {
    if (token !== '' && SCOPE_TOKEN.test(token)) into.add(token);
  }
}

/** Parses one scope string as a SMART clinical-data scope, or returns undefined. */
export function parseSmartScope(scope: string): SmartScope | undefined {
  const m = SMART_SHAPE.exec(scope);
  if (!m) return undefined;
  const context = m[1] as SmartContext;
  const resourceType = m[2];
  const perms = m[3];
  const query = m[4];
  if (resourceType !== '*' && !RESOURCE_TYPE.test(resourceType)) return undefined;

  const v1 = Object.hasOwn(V1_PERMISSIONS, perms) ? V1_PERMISSIONS[perms] : undefined;
  if (v1 !== undefined) {
    // Restrictions exist only in v2 (`.rs?category=…`); a v1 scope with a query is malformed.
    if (query !== undefined) return undefined;
    return Object.freeze({ scope, context, resourceType, permissions: v1, version: 1, restrictions: Object.freeze([]) });
  }
  if (perms === '' || !V2_PERMISSIONS.test(perms)) return undefined;
  let restrictions: (readonly [string, string])[] = [];
  if (query !== undefined) {
    const r = parseRestrictions(query);
    if (!r) return undefined;
    restrictions = r;
  }
  return Object.freeze({ scope, context, resourceType, permissions: perms, version: 2, restrictions: Object.freeze(restrictions) });
}

export function parseRestrictions(query: string): (readonly [string, string])[] | undefined {
  if (!RESTRICTION_SHAPE.test(query)) return undefined;
  const out: (readonly [string, string])[] = [];
  const seen = new Set<string>();
  // ';' separates parameters too for the classifier (old CGI convention some servers still
  // follow): split on it here as well, or a parameter hidden behind ';' (`code=x;_include=…`)
  // would be seen by such an upstream and not by us. Seeing more parameters only refuses more.
  for (const [name, value] of new URLSearchParams(query.replaceAll(';', '&'))) {
    if (!RESTRICTION_NAME.test(name) || value === '') return undefined;
    // A comma is FHIR search OR; `?category=a,b` is refused rather than interpreted.
    if (value.includes(',')) return undefined;
    // The same name twice is ambiguous (AND? either?): refuse the scope.
    if (seen.has(name)) return undefined;
    seen.add(name);
    out.push(Object.freeze([name, value] as const));
  }
  return out.length > 0 ? out : undefined;
}

/** Literal, case-sensitive membership of every required scope string. */
export function hasAllScopes(set: ScopeSet, required: readonly string[]): boolean {
  return required.every((s) => set.raw.has(s));
}

/** The required scope strings the set does not hold (literal, case-sensitive), in input order. */
export function missingScopes(set: ScopeSet, required: readonly string[]): string[] {
  return required.filter((s) => !set.raw.has(s));
}
