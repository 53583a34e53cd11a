import { formatParam, preferredTypes } from '../lib/accept.js';

/**
 * FHIR R4 Binary (§ Serving Binary Resources using the RESTful API): a read returns the raw content
 * unless the client asks for a FHIR format, then the Binary resource. What counts as asking for FHIR:
 * `_format` (any FHIR format name or MIME type), or an Accept whose preferred entry is a FHIR
 * MIME type. Generic `application/json` / `application/xml` are FHIR requests only when the
 * Binary's own content type is not that same type — a JSON document stored as a Binary is served
 * raw to a client that asks for JSON. (R4 leaves generic types to the server; this is the reading
 * that lets both kinds of client get what they mean, and is documented in docs/binary.md.)
 */
const FHIR_TYPES = new Set(['application/fhir+json', 'application/json+fhir', 'application/fhir+xml', 'application/xml+fhir']);
const GENERIC = new Set(['application/json', 'application/xml', 'text/xml']);
const FORMAT_NAMES = new Set(['json', 'xml', 'ttl', ...FHIR_TYPES, 'application/json', 'application/xml', 'text/json', 'text/xml']);

export type BinaryView = 'raw' | 'fhir-json' | 'fhir-xml';

export function binaryView(accept: string | undefined, query: string, contentType: string): BinaryView {
  const format = formatParam(query);
  if (format !== undefined && FORMAT_NAMES.has(format)) return format.includes('xml') ? 'fhir-xml' : 'fhir-json';
  const best = preferredTypes(accept)[0];
  if (best === undefined) return 'raw';
  if (FHIR_TYPES.has(best)) return best.includes('xml') ? 'fhir-xml' : 'fhir-json';
  if (GENERIC.has(best) && best !== contentType) return best.includes('xml') ? 'fhir-xml' : 'fhir-json';
  return 'raw';
}
