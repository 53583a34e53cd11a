/** The FHIR interactions the classifier can name (http://hl7.org/fhir/R4/http.html). */
export type InteractionKind =
  | 'read'
  | 'vread'
  | 'update'
  | 'patch'
  | 'delete'
  | 'create'
  | 'search'
  | 'history'
  | 'operation'
  | 'batch'
  | 'transaction'
  | 'capabilities';

/**
 * What one request (or one Bundle entry) asks the FHIR server to do. Produced by the one
 * classifier (src/fhir/classify.ts) and read by every later stage.
 */
export interface Interaction {
  readonly kind: InteractionKind;
  /** Absent for system-level interactions (capabilities, batch/transaction, system search/history/operations). */
  readonly resourceType?: string;
  readonly id?: string;
  readonly versionId?: string;
  /** Operation name without the `$`, e.g. `binary-access-read`. */
  readonly operation?: string;
  /** For compartment searches like `Patient/123/Observation`: the compartment owner. */
  readonly compartment?: { readonly resourceType: string; readonly id: string };
  /** True for conditional create/update/delete/patch (criteria in the query or If-None-Exist). */
  readonly conditional?: boolean;
  /** A conditional create's criteria (If-None-Exist, or a Bundle entry's ifNoneExist): a search the server runs. */
  readonly criteria?: string;
  /** The HTTP method as received (after HEAD → GET equivalence is noted here, not applied). */
  readonly method: string;
  /** The canonical path relative to the FHIR base, without leading slash, e.g. `Patient/1/_history/2`. */
  readonly path: string;
  /** The raw query string without `?` (may be empty). */
  readonly query: string;
}

/** What the upstream is sent for an interaction: its path and query relative to the FHIR base, e.g. `/Patient/1?_format=json`. */
export function targetOf(i: Interaction): string {
  return i.query ? `/${i.path}?${i.query}` : `/${i.path}`;
}
