/** The shapes of parsed scopes (see ../scopes.ts for the model). */

export type SmartContext = 'patient' | 'user' | 'system';

/** One parsed SMART clinical-data scope. */
export interface SmartScope {
  /** The scope string exactly as it appeared in the token. */
  readonly scope: string;
  readonly context: SmartContext;
  /** A resource type name, or `*`. */
  readonly resourceType: string;
  /** Normalised to v2 letters in `cruds` order: v1 `read` → `rs`, `write` → `cud`, `*` → `cruds`. */
  readonly permissions: string;
  readonly version: 1 | 2;
  /**
   * v2 search restrictions (`?param=value&…`), decoded. Empty when unrestricted. A restricted
   * scope only ever grants a search that carries every restriction (see smartGrants).
   */
  readonly restrictions: readonly (readonly [name: string, value: string])[];
}

/** The parsed scopes of one token. Immutable; safe to cache per token. */
export interface ScopeSet {
  /** Every well-formed scope token, for literal checks such as `files.write`. */
  readonly raw: ReadonlySet<string>;
  /** The subset of `raw` that parsed as SMART clinical-data scopes. */
  readonly smart: readonly SmartScope[];
}

export interface SmartGrantContext {
  /** The token's `patient` launch-context claim. Required before any `patient/` scope grants. */
  readonly patient?: string | undefined;
  /**
   * Set only by the security pipeline for a request the binary plane will serve itself: a
   * patient-scoped Binary read is then let through for the plane's securityContext check
   * (binaryReadDeferred). Everywhere else (the plane's own checks included) it is not granted.
   */
  readonly deferBinaryRead?: boolean | undefined;
  /**
   * Set only by the security pipeline: a patient-scoped read by id of a compartment type is let
   * through for a check that asks the upstream whether it is the patient's (compartmentReadDeferred).
   */
  readonly deferCompartmentRead?: boolean | undefined;
}
