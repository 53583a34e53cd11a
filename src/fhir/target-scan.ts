/**
 * Request-target hygiene for the classifier: the scans that refuse what an upstream could read
 * differently from us (encoded or ambiguous path bytes, method-override and token query
 * parameters, override headers). They only check; nothing here decodes or rewrites what is forwarded.
 */

import { GatewayError } from '../errors/catalogue.js';

/** Request headers as Node/fastify expose them; names are matched case-insensitively. */
export type RequestHeaders = Readonly<Record<string, string | string[] | undefined>>;

// Char codes used by the scanners.
export const SLASH = 0x2f;
export const DOT = 0x2e;
export const PERCENT = 0x25;
export const BACKSLASH = 0x5c;
export const SEMICOLON = 0x3b;
export const HASH = 0x23;
export const QUESTION = 0x3f;
export const COLON = 0x3a;
export const AMPERSAND = 0x26;
export const EQUALS = 0x3d;
export const DOLLAR = 0x24;

/**
 * Refuses every path form that servers, proxies and frameworks are known to read differently
 * (RFC 3986 §2.1 percent-encoding, §3.3 path parameters, §3.5 fragment, §5.2.4 dot segments; '\'
 * which WHATWG URL and several servers treat as '/'; '//' which some servers collapse). One pass.
 */
export function scanPath(path: string): void {
  const len = path.length;
  let segStart = 1; // path[0] is '/'
  for (let i = 1; i <= len; i++) {
    const c = i === len ? SLASH : path.charCodeAt(i);
    if (c === SLASH) {
      const segLen = i - segStart;
      if (segLen === 0) {
        // An empty segment: '//' in the middle, or the trailing '/' (checked after the base path
        // is stripped, because `[base]/` is allowed).
        if (i !== len) {
          throw new GatewayError('AMBIGUOUS_PATH', "empty path segment ('//')");
        }
      } else if (path.charCodeAt(segStart) === DOT && (segLen === 1 || (segLen === 2 && path.charCodeAt(segStart + 1) === DOT))) {
        throw new GatewayError('AMBIGUOUS_PATH', "dot segment ('.' or '..') in path");
      }
      segStart = i + 1;
      continue;
    }
    if (c <= 0x20 || c >= 0x7f) {
      throw new GatewayError('AMBIGUOUS_PATH', 'path contains a space, control character or non-ASCII character');
    }
    if (c === PERCENT) throw new GatewayError('AMBIGUOUS_PATH', "percent-encoded characters ('%') are not accepted in the path");
    if (c === BACKSLASH) throw new GatewayError('AMBIGUOUS_PATH', "backslash ('\\') in path");
    if (c === SEMICOLON) throw new GatewayError('AMBIGUOUS_PATH', "path parameters (';') are not accepted");
    if (c === HASH) throw new GatewayError('AMBIGUOUS_PATH', "fragment ('#') in request target");
  }
}

/**
 * The query is forwarded raw, so it is only checked, never decoded: no fragment (RFC 9112 §3.2
 * origin-form has none; servers disagree on whether '#…' is data), no spaces, controls or non-ASCII
 * (RFC 3986 §3.4 allows none of them raw, and upstreams would decode such bytes as different
 * charsets), and no `_method` parameter (method override).
 */
export function scanQuery(query: string): void {
  const len = query.length;
  let nameStart = 0;
  let nameEnd = -1; // index of the first '=' in the current parameter, -1 if none yet
  for (let i = 0; i <= len; i++) {
    const c = i === len ? AMPERSAND : query.charCodeAt(i);
    // '&' and ';' both end a parameter: some frameworks still split on ';' (old CGI convention,
    // HTML 4.01 §B.2.2), so `a=1;_method=DELETE` must be caught too.
    if (c === AMPERSAND || c === SEMICOLON) {
      const end = nameEnd < 0 ? i : nameEnd;
      const name = paramName(query, nameStart, end);
      if (name === '_method') {
        throw new GatewayError('METHOD_OVERRIDE', "the '_method' query parameter is not accepted");
      }
      // RFC 6750 §2.3 lets a token ride in the query; we do not: it would end up in access logs
      // (ours are clean, the upstream's may not be) and in browser histories.
      if (name === 'access_token') {
        throw new GatewayError('BAD_REQUEST', 'tokens are accepted only in the Authorization header');
      }
      nameStart = i + 1;
      nameEnd = -1;
      continue;
    }
    if (c === EQUALS) {
      if (nameEnd < 0) nameEnd = i;
      continue;
    }
    if (c <= 0x20 || c >= 0x7f) {
      throw new GatewayError('AMBIGUOUS_PATH', 'query contains a space, control character or non-ASCII character');
    }
    if (c === HASH) throw new GatewayError('AMBIGUOUS_PATH', "fragment ('#') in request target");
  }
}

export const WATCHED_PARAMS = ['_method', 'access_token'];

export const WATCHED_MIN = 7;

export const WATCHED_MAX = 12 * 3; // fully percent-encoded

/**
 * query[start, end) as a lowercase, percent-decoded parameter name when it could be one we
 * refuse, else ''. Decoded and case-folded (`%5Fmethod`, `ACCESS_TOKEN`) because whichever
 * framework honours it may decode and fold case.
 */
export function paramName(query: string, start: number, end: number): string {
  const len = end - start;
  if (len < WATCHED_MIN || len > WATCHED_MAX) return '';
  let name = query.slice(start, end);
  if (name.includes('%')) {
    try {
      name = decodeURIComponent(name);
    } catch {
      // Not decodable (bad escape or invalid UTF-8): nobody can read it as a name we watch.
      return '';
    }
  }
  name = name.toLowerCase();
  return WATCHED_PARAMS.includes(name) ? name : '';
}

/**
 * Method override headers (X-HTTP-Method-Override and friends) make frameworks run a different
 * method than the one we authorized, so their mere presence is refused. Names are compared
 * case-insensitively (RFC 9110 §5.1) even though Node lowercases them, because callers may not.
 * Returns If-None-Exist's value when present (a conditional create and its criteria).
 */
export function scanHeaders(headers: RequestHeaders): string | undefined {
  let ifNoneExist: string | undefined;
  for (const name in headers) {
    const len = name.length;
    // Length filter first: 13 = x-http-method / if-none-exist, 17 = x-method-override,
    // 22 = x-http-method-override. Everything else costs one comparison.
    if (len !== 13 && len !== 17 && len !== 22) continue;
    if (headers[name] === undefined) continue;
    const lower = name.toLowerCase();
    if (lower === 'x-http-method-override' || lower === 'x-http-method' || lower === 'x-method-override') {
      throw new GatewayError('METHOD_OVERRIDE', `the ${lower} header is not accepted`);
    }
    if (lower === 'if-none-exist') {
      const v = headers[name];
      // A repeated header is refused before classification (http/context.ts); join defensively anyway.
      ifNoneExist = Array.isArray(v) ? v.join('&') : String(v);
    }
  }
  return ifNoneExist;
}

export function hasScheme(url: string): boolean {
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === COLON) return true;
    if (c === SLASH || c === QUESTION || c === HASH) return false;
  }
  return false;
}

export function clip(s: string): string {
  const cut = s.length > 100 ? s.slice(0, 100) : s;
  let out = '';
  for (let i = 0; i < cut.length; i++) {
    const c = cut.charCodeAt(i);
    out += c >= 0x20 && c < 0x7f ? cut[i] : '?';
  }
  return s.length > 100 ? out + '…' : out;
}
