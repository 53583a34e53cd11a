/**
 * The one FHIR route classifier: turns a raw HTTP request target (or a Bundle entry's request) into
 * an {@link Interaction}, or refuses it with a {@link GatewayError}.
 *
 * Every later stage (authorization, Binary handling, forwarding) trusts what this module says, so it
 * is strict: a request that a FHIR server behind us could read differently from how we read it is
 * refused, never normalised. In particular nothing is decoded, nothing is rewritten, and the path we
 * return is rebuilt from the parts we validated, so the forwarder sends exactly what was authorized.
 *
 * Performance: this runs on every proxied request. It deliberately avoids the WHATWG URL parser
 * (which normalises `\`, `.`/`..` and percent-encoding, i.e. exactly the ambiguities we must *see*)
 * and regular expressions; it is a split on '?' and '/' plus char-code scans.
 *
 * Transport-independent: no fastify or node:http types here.
 */
import { GatewayError } from '../errors/catalogue.js';
import type { Interaction } from './interaction.js';
import { ALLOW, isRead, methodNotAllowed, notFound, operationName, resourceType } from './classify-segments.js';
import { routeInstance } from './classify-instance.js';
import { clip, DOLLAR, hasScheme, scanHeaders, scanPath, scanQuery, SLASH, type RequestHeaders } from './target-scan.js';

export type { RequestHeaders } from './target-scan.js';

export interface ClassifyRequestInput {
  /** The request method exactly as received (methods are case-sensitive, RFC 9110 §9.1). */
  readonly method: string;
  /** The raw request-target exactly as received (Node's `req.url`), e.g. `/fhir/Patient/1?_format=json`. */
  readonly url: string;
  /** The public FHIR base path: '' or e.g. '/fhir' (leading '/', no trailing '/'). */
  readonly basePath: string;
  readonly headers?: RequestHeaders;
}

export interface ClassifyEntryOptions {
  /**
   * Bundle.entry.request.ifNoneExist. When present on a POST entry the entry is a conditional create
   * (R4 bundle.html, Bundle.entry.request.ifNoneExist; http.html "conditional create").
   */
  readonly ifNoneExist?: string | undefined;
}

const SMART_CONFIGURATION = '.well-known/smart-configuration';

/** The methods FHIR R4 uses (http.html; the http-verb value set bound to Bundle.entry.request.method). */
const FHIR_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Classifies one HTTP request. `url` is the raw request-target; `basePath` the public FHIR base.
 *
 * Order of checks (first failure wins): request-target form → method-override headers → method →
 * path and query syntax → `_method` parameter → base path → route shape → method for that shape.
 *
 * @throws GatewayError ABSOLUTE_FORM_TARGET, METHOD_OVERRIDE, METHOD_NOT_ALLOWED, AMBIGUOUS_PATH,
 *   NOT_FOUND (and INTERNAL if `basePath` itself is malformed, which is a configuration bug).
 */
export function classifyRequest(input: ClassifyRequestInput): Interaction {
  const { method, url, basePath } = input;
  // RFC 9112 §3.2: only origin-form ("/path?query") is meaningful for us. absolute-form
  // (§3.2.2) would let the client name a host the upstream might honour over its own; asterisk-form
  // (§3.2.4) and authority-form (§3.2.3) are for OPTIONS/CONNECT which we do not serve.
  if (url.charCodeAt(0) !== SLASH) throw notOriginForm(url);
  if (basePath.length !== 0 && (basePath.charCodeAt(0) !== SLASH || basePath.charCodeAt(basePath.length - 1) === SLASH)) {
    throw new GatewayError('INTERNAL', 'misconfigured FHIR base path');
  }
  const criteria = input.headers === undefined ? undefined : scanHeaders(input.headers);
  if (!FHIR_METHODS.has(method)) throw unsupportedMethod(method, url, basePath);
  return classifyTarget(method, url, basePath, criteria, false);
}

/**
 * Classifies one Bundle entry (`Bundle.entry.request.method` + `.url`, R4 bundle.html and http.html
 * "batch/transaction": the url is relative to the base, e.g. `Patient/1`, `Patient?name=x`).
 * Same rules and error codes as {@link classifyRequest}, plus BAD_BUNDLE for: a method outside the
 * http-verb value set, an absolute URL or one starting with '/', and a nested batch/transaction
 * (POST to the empty path).
 */
export function classifyEntry(method: string, url: string, options?: ClassifyEntryOptions): Interaction {
  // Bundle content is parsed JSON: do not trust the static types.
  if (typeof method !== 'string' || typeof url !== 'string') {
    throw new GatewayError('BAD_BUNDLE', 'entry request.method and request.url must be strings');
  }
  if (!FHIR_METHODS.has(method)) {
    throw new GatewayError('BAD_BUNDLE', `entry request.method '${clip(method)}' is not a FHIR http-verb`);
  }
  if (url.charCodeAt(0) === SLASH) {
    throw new GatewayError('BAD_BUNDLE', "entry request.url must be relative to the base (no leading '/')");
  }
  // RFC 3986 §3.1/§4.2: a ':' before the first '/', '?' or '#' makes the reference parse as having
  // a scheme (`http://…`, `urn:uuid:…`, or even `Patient:1`). Refuse all of them.
  if (hasScheme(url)) {
    throw new GatewayError('BAD_BUNDLE', 'entry request.url must be relative (absolute URLs are not accepted)');
  }
  const criteria = options?.ifNoneExist;
  if (criteria !== undefined && typeof criteria !== 'string')
    throw new GatewayError('BAD_BUNDLE', 'entry request.ifNoneExist must be a string');
  return classifyTarget(method, '/' + url, '', criteria, true);
}

/**
 * Shared core. `target` starts with '/'. In entry mode a nested batch is BAD_BUNDLE and 405s carry
 * no Allow header (they describe an entry, not the HTTP resource the client addressed).
 */
function classifyTarget(method: string, target: string, basePath: string, criteria: string | undefined, entry: boolean): Interaction {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);

  scanPath(path);
  if (query.length !== 0) scanQuery(query);

  // Base path: exact segment-wise prefix. `/fhirX/Patient` is not under `/fhir`, and the comparison
  // is case-sensitive (R4 http.html, Service Base URL: URLs are case-sensitive).
  let rel: string;
  if (basePath.length === 0) {
    rel = path.slice(1);
  } else if (path.startsWith(basePath)) {
    if (path.length === basePath.length) rel = '';
    else if (path.charCodeAt(basePath.length) === SLASH) rel = path.slice(basePath.length + 1);
    else throw new GatewayError('NOT_FOUND', 'the path is outside the FHIR base');
  } else {
    throw new GatewayError('NOT_FOUND', 'the path is outside the FHIR base');
  }
  // `[base]/` is the base itself; any other trailing '/' is an empty last segment which servers
  // treat inconsistently (ignored, 404, or a different resource).
  if (rel.length !== 0 && rel.charCodeAt(rel.length - 1) === SLASH) {
    throw new GatewayError('AMBIGUOUS_PATH', "trailing '/' in path");
  }

  if (rel.length === 0) return routeBase(method, query, entry);
  const s = rel.split('/');
  const n = s.length;
  const s0 = s[0];

  if (n === 1) {
    if (s0 === 'metadata') {
      // R4 http.html "capabilities": GET [base]/metadata.
      if (isRead(method)) return { kind: 'capabilities', method, path: 'metadata', query };
      throw methodNotAllowed(method, 'metadata', ALLOW.read, entry);
    }
    if (s0 === '_history') {
      // R4 http.html "history": GET [base]/_history (whole system).
      if (isRead(method)) return { kind: 'history', method, path: '_history', query };
      throw methodNotAllowed(method, '_history', ALLOW.read, entry);
    }
    if (s0.charCodeAt(0) === DOLLAR) {
      // R4 operations.html: system-level operation, invoked with POST, or GET when it has no side effects.
      const operation = operationName(s0);
      if (isRead(method) || method === 'POST') {
        return { kind: 'operation', operation, method, path: '$' + operation, query };
      }
      throw methodNotAllowed(method, '$[operation]', ALLOW.operation, entry);
    }
  }

  if (s0 === '.well-known') {
    // SMART App Launch discovery, [base]/.well-known/smart-configuration: clients read it before
    // they hold a token, like the CapabilityStatement, so it is that interaction (and its rule).
    if (n !== 2 || s[1] !== 'smart-configuration') throw notFound();
    if (isRead(method)) return { kind: 'capabilities', method, path: SMART_CONFIGURATION, query };
    throw methodNotAllowed(method, SMART_CONFIGURATION, ALLOW.read, entry);
  }

  // Past this point the first segment must be a resource type; `metadata/x`, `_history/x` and
  // `$op/x` are not shapes FHIR defines.
  if (n !== 1 && (s0 === 'metadata' || s0 === '_history' || s0.charCodeAt(0) === DOLLAR)) throw notFound();
  const type = resourceType(s0);
  if (type === undefined) {
    throw new GatewayError('NOT_FOUND', `'${clip(s0)}' is not a FHIR R4 resource type`);
  }

  if (n === 1) return routeType(method, type, query, criteria, entry);

  const s1 = s[1];
  if (s1 === '_search') {
    if (n !== 2) throw notFound();
    // R4 http.html "search": POST [base]/[type]/_search (parameters in the body and/or query).
    if (method === 'POST') return { kind: 'search', resourceType: type, method, path: type + '/_search', query };
    throw methodNotAllowed(method, '[type]/_search', ALLOW.post, entry);
  }
  if (s1 === '_history') {
    if (n !== 2) throw notFound();
    if (isRead(method)) return { kind: 'history', resourceType: type, method, path: type + '/_history', query };
    throw methodNotAllowed(method, '[type]/_history', ALLOW.read, entry);
  }
  if (s1.charCodeAt(0) === DOLLAR) {
    const operation = operationName(s1);
    if (n !== 2) throw notFound();
    if (isRead(method) || method === 'POST') {
      return { kind: 'operation', resourceType: type, operation, method, path: type + '/$' + operation, query };
    }
    throw methodNotAllowed(method, '[type]/$[operation]', ALLOW.operation, entry);
  }

  return routeInstance(method, type, s, query, entry);
}

/** `[base]` itself: batch/transaction (POST) and whole-system search (GET with parameters). */
function routeBase(method: string, query: string, entry: boolean): Interaction {
  if (method === 'POST') {
    // R4 http.html "batch/transaction": POST [base] with a Bundle. Whether it is a batch or a
    // transaction is Bundle.type, i.e. in the body, which this stage never reads: it is classified
    // 'batch' here and the Bundle stage turns it into 'transaction' after parsing Bundle.type.
    if (entry) throw new GatewayError('BAD_BUNDLE', 'an entry cannot itself be a batch or transaction');
    return { kind: 'batch', method, path: '', query };
  }
  // R4 http.html "search": GET [base]?[parameters] searches all types. Without parameters there is
  // nothing to classify it as (servers answer it as a search, a capability page, or a 404), so it
  // is refused.
  if (isRead(method) && query.length !== 0) return { kind: 'search', method, path: '', query };
  if (query.length === 0) throw methodNotAllowed(method, 'the base without search parameters', ALLOW.post, entry);
  throw methodNotAllowed(method, 'the base', ALLOW.baseWithQuery, entry);
}

/** `[base]/[type]`: search, create, and the conditional update/patch/delete forms. */
function routeType(method: string, type: string, query: string, criteria: string | undefined, entry: boolean): Interaction {
  switch (method) {
    case 'GET':
    case 'HEAD':
      return { kind: 'search', resourceType: type, method, path: type, query };
    case 'POST':
      // R4 http.html "conditional create": the criteria are in If-None-Exist, not the URL.
      return criteria !== undefined
        ? { kind: 'create', resourceType: type, conditional: true, criteria, method, path: type, query }
        : { kind: 'create', resourceType: type, method, path: type, query };
    case 'PUT':
    case 'PATCH':
    case 'DELETE':
      // R4 http.html "conditional update/patch/delete": PUT|PATCH|DELETE [base]/[type]?[criteria].
      // Without criteria the request has no target at all.
      if (query.length !== 0) {
        const kind = method === 'PUT' ? 'update' : method === 'PATCH' ? 'patch' : 'delete';
        return { kind, resourceType: type, conditional: true, method, path: type, query };
      }
      throw methodNotAllowed(method, '[type] without search criteria', ALLOW.type, entry);
    default:
      throw methodNotAllowed(method, '[type]', query.length !== 0 ? ALLOW.typeWithQuery : ALLOW.type, entry);
  }
}

/**
 * A method outside GET/HEAD/POST/PUT/PATCH/DELETE. Always METHOD_NOT_ALLOWED; when the path is a
 * shape we know, the error carries that shape's Allow list (error path only, so the extra
 * classification costs nothing on accepted requests).
 */
function unsupportedMethod(method: string, url: string, basePath: string): GatewayError {
  try {
    classifyTarget(method, url, basePath, undefined, false);
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'METHOD_NOT_ALLOWED') return err;
  }
  return new GatewayError('METHOD_NOT_ALLOWED', `method '${clip(method)}' is not supported`);
}

function notOriginForm(url: string): GatewayError {
  if (url === '*') return new GatewayError('ABSOLUTE_FORM_TARGET', 'asterisk-form request target');
  if (hasScheme(url)) return new GatewayError('ABSOLUTE_FORM_TARGET', 'absolute-form request target');
  return new GatewayError('ABSOLUTE_FORM_TARGET', "the request target must be in origin-form (start with '/')");
}
