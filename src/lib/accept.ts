import Negotiator from 'negotiator';

/**
 * Content negotiation (RFC 9110 §12.5.1), one way for every answer the gateway writes: errors
 * (JSON or XML OperationOutcome), rewritten answers (FHIR JSON only), Binary (content or
 * resource). Parsing Accept is negotiator's (jshttp), not ours. `_format` overrides Accept (FHIR
 * R4 http.html §2.21.0.6).
 */

export const JSON_TYPES: readonly string[] = ['application/fhir+json', 'application/json+fhir', 'application/json'];
export const XML_TYPES: readonly string[] = ['application/fhir+xml', 'application/xml+fhir', 'application/xml', 'text/xml'];

/**
 * Accept without media-type parameters other than `q`. negotiator matches parameters exactly, as
 * RFC 9110 allows, but FHIR clients send `fhirVersion=4.0` or `charset=utf-8`, which the
 * gateway's FHIR JSON satisfies whatever they say.
 */
function withoutParameters(accept: string): string {
  return accept.includes(';') ? accept.replace(/;(?!\s*q\s*=)[^;,]*/gi, '') : accept;
}

/** Which of `offered` the client prefers (ties go to the first offered); undefined when it accepts none. A missing or empty Accept accepts anything. */
export function negotiate(accept: string | undefined, offered: readonly string[]): string | undefined {
  if (accept === undefined || accept.trim() === '') return offered[0];
  return new Negotiator({ headers: { accept: withoutParameters(accept) } }).mediaType([...offered]);
}

/** The client's media ranges, most preferred first (lowercase, no parameters); `*\/*` when it sends none. */
export function preferredTypes(accept: string | undefined): string[] {
  if (accept === undefined || accept.trim() === '') return ['*/*'];
  return new Negotiator({ headers: { accept: withoutParameters(accept) } }).mediaTypes().map((t) => t.toLowerCase());
}

/**
 * The `_format` parameter of a raw query, decoded, without parameters; undefined when absent.
 * Its name is matched in any case and after `;` too: seeing `_format` where a lenient server would
 * is the safe side (it can only refuse more, or serve the resource rather than its content).
 */
export function formatParam(query: string): string | undefined {
  if (!/_format=/i.test(query)) return undefined;
  for (const part of query.split(/[&;]/)) {
    if (part.slice(0, 8).toLowerCase() !== '_format=') continue;
    try {
      // A literal `+` is kept: `_format=application/fhir+json` names the FHIR type, and no format has a space.
      return decodeURIComponent(part.slice(8)).split(';')[0].trim().toLowerCase();
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** Whether `_format` asks for XML: any XML format (`xml`, `application/fhir+xml`, `rdf+xml`, …). */
export function isXmlFormat(format: string): boolean {
  return /xml/i.test(format);
}

/**
 * The format of an OperationOutcome: JSON whenever the client takes JSON at all (what the gateway
 * answers with is FHIR JSON, so its errors match); XML when it names an XML type and does not take
 * JSON; JSON otherwise (an error has to be in some format).
 */
export function outcomeFormat(accept: string | undefined, query: string): 'json' | 'xml' {
  const format = formatParam(query);
  if (format !== undefined) return isXmlFormat(format) ? 'xml' : 'json';
  if (accept === undefined || acceptsJson(accept, '')) return 'json';
  const xml = negotiate(accept, XML_TYPES);
  // Named, not only reached by a wildcard (`text/*` is no request for XML).
  return xml !== undefined && accept.toLowerCase().includes(xml) ? 'xml' : 'json';
}

/** Accept values seen before, and whether they take JSON: a client sends the same one request after request. */
const takesJson = new Map<string, boolean>();
const MAX_REMEMBERED = 256;

/** Whether the client takes FHIR JSON (by `_format`, else Accept). */
export function acceptsJson(accept: string | undefined, query: string): boolean {
  const format = query ? formatParam(query) : undefined;
  if (format !== undefined) return !isXmlFormat(format);
  if (accept === undefined) return true;
  let ok = takesJson.get(accept);
  if (ok === undefined) {
    ok = negotiate(accept, JSON_TYPES) !== undefined;
    if (takesJson.size >= MAX_REMEMBERED) takesJson.clear();
    takesJson.set(accept, ok);
  }
  return ok;
}
