import { GatewayError } from '../errors/catalogue.js';
import { ALLOW, fhirId, isRead, methodNotAllowed, notFound, operationName, resourceType } from './classify-segments.js';
import type { Interaction } from './interaction.js';
import { clip, DOLLAR } from './target-scan.js';

/**
 * The five compartments R4 defines (compartmentdefinition.html). Only these
 * types can own a compartment search `[type]/[id]/[other type]`.
 */
const COMPARTMENT_OWNERS: ReadonlySet<string> = new Set(['Patient', 'Encounter', 'RelatedPerson', 'Practitioner', 'Device']);

/**
 * `[base]/[type]/[id]` and below (`s` are the path's segments, `s[0]` the type): read, update,
 * patch, delete; history and vread; operations on an instance or a version; compartment search.
 */
export function routeInstance(method: string, type: string, s: readonly string[], query: string, entry: boolean): Interaction {
  const n = s.length;
  const s1 = s[1];
  const id = fhirId(s1, 'id');
  if (n === 2) return routeOne(method, type, id, query, entry);

  const s2 = s[2];
  if (s2 === '_history') {
    if (n === 3) {
      if (isRead(method)) {
        return { kind: 'history', resourceType: type, id, method, path: type + '/' + id + '/_history', query };
      }
      throw methodNotAllowed(method, '[type]/[id]/_history', ALLOW.read, entry);
    }
    const versionId = fhirId(s[3], 'version id');
    const version = type + '/' + id + '/_history/' + versionId;
    if (n === 4) {
      // R4 http.html "vread": GET [base]/[type]/[id]/_history/[vid].
      if (isRead(method)) return { kind: 'vread', resourceType: type, id, versionId, method, path: version, query };
      throw methodNotAllowed(method, '[type]/[id]/_history/[vid]', ALLOW.read, entry);
    }
    const s4 = s[4];
    if (n === 5 && s4.charCodeAt(0) === DOLLAR) {
      // R4 operations.html: operations on a specific version, e.g. $meta on _history/[vid].
      const operation = operationName(s4);
      if (isRead(method))
        return { kind: 'operation', resourceType: type, id, versionId, operation, method, path: version + '/$' + operation, query };
      throw methodNotAllowed(method, '[type]/[id]/_history/[vid]/$[operation]', ALLOW.read, entry);
    }
    throw notFound();
  }
  if (s2.charCodeAt(0) === DOLLAR) {
    const operation = operationName(s2);
    if (n !== 3) throw notFound();
    if (isRead(method) || method === 'POST')
      return { kind: 'operation', resourceType: type, id, operation, method, path: type + '/' + id + '/$' + operation, query };
    throw methodNotAllowed(method, '[type]/[id]/$[operation]', ALLOW.operation, entry);
  }
  if (s2 === '*') {
    // R4 search.html (Compartments) `[compartment]/[id]/*` (all types in the compartment): its scope
    // depends on the server's CompartmentDefinition, which we cannot authorize per type. Refused.
    throw new GatewayError('NOT_FOUND', "compartment searches across all types ('*') are not supported");
  }
  const other = resourceType(s2);
  if (other === undefined) {
    throw new GatewayError('NOT_FOUND', `'${clip(s2)}' is not a FHIR R4 resource type`);
  }
  if (n !== 3) throw notFound();
  // R4 search.html (Compartments) and http.html (search): compartment search GET [base]/[Compartment]/[id]/[type]?params.
  if (!COMPARTMENT_OWNERS.has(type)) {
    throw new GatewayError('NOT_FOUND', `${type} is not a compartment type`);
  }
  if (isRead(method)) {
    return {
      kind: 'search',
      resourceType: other,
      compartment: { resourceType: type, id },
      method,
      path: type + '/' + id + '/' + other,
      query,
    };
  }
  throw methodNotAllowed(method, '[compartment]/[id]/[type]', ALLOW.read, entry);
}

/** `[base]/[type]/[id]`: read, update, patch, delete. */
function routeOne(method: string, type: string, id: string, query: string, entry: boolean): Interaction {
  const path = type + '/' + id;
  switch (method) {
    case 'GET':
    case 'HEAD':
      return { kind: 'read', resourceType: type, id, method, path, query };
    case 'PUT':
      return { kind: 'update', resourceType: type, id, method, path, query };
    case 'PATCH':
      return { kind: 'patch', resourceType: type, id, method, path, query };
    case 'DELETE':
      return { kind: 'delete', resourceType: type, id, method, path, query };
    default:
      throw methodNotAllowed(method, '[type]/[id]', ALLOW.instance, entry);
  }
}
