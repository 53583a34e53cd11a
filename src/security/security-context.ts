import { GatewayError } from '../errors/catalogue.js';
import type { Interaction } from '../fhir/interaction.js';
import { RELATIVE_REFERENCE } from '../fhir/resource-types.js';
import type { Exchange } from './exchange.js';
import { covers, PATIENT_COMPARTMENT, readsEveryType, smartGrants } from './scopes.js';

/** Reads from the upstream as the exchange's client (its token forwarded when the rule says so). */
export interface UpstreamReader {
  /** A small GET: the parsed answer when it is 200, undefined otherwise. */
  getJson(x: Exchange, path: string): Promise<unknown>;
}

/** A resource as the guard reads it: only `securityContext` matters. */
export type WithSecurityContext = { readonly securityContext?: unknown } & Record<string, unknown>;

/**
 * Binary.securityContext (R4): the resource whose access rules govern the Binary. Reading a
 * Binary that has one, or writing one that names one, requires that the caller may read that
 * resource:
 * - its SMART scopes grant a read of it (user/system `Type.r`, or a patient scope on the
 *   patient's own Patient resource);
 * - or, for a patient-scoped caller, the upstream confirms that the resource is in the
 *   patient's compartment (a search pinned to both its id and the patient);
 * - and, when the rule forwards the caller's token, the upstream itself lets the caller read it
 *   (its own access rules apply too).
 * A patient-scoped caller may only read Binaries that have a securityContext: otherwise nothing
 * ties the Binary to the patient. Where the rule asks for no SMART scopes, there is no scope
 * model to apply and every check passes.
 */
export class SecurityContextGuard {
  constructor(private readonly upstream: UpstreamReader) {}

  /** Unrestricted user/system read on every type: every securityContext check would pass on scopes. */
  static readsEverything(x: Exchange): boolean {
    const scopes = x.smartScopes;
    return !scopes || readsEveryType(scopes);
  }

  /** Reading a Binary: its securityContext decides; without one, only user/system scopes reach it. */
  async binaryRead(x: Exchange, binary: WithSecurityContext): Promise<void> {
    const sc = securityContextOf(binary, 'read');
    if (sc !== undefined) return this.require(x, sc);
    const scopes = x.smartScopes;
    if (scopes && !smartGrants(scopes, x.interaction, {})) {
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        'a patient-scoped token may read only Binaries whose securityContext is in the patient compartment',
      );
    }
  }

  /** Throws INSUFFICIENT_SCOPE unless the caller may read `reference` (see the class comment). */
  async require(x: Exchange, reference: string): Promise<void> {
    const scopes = x.smartScopes;
    if (!scopes) return;
    if (!RELATIVE_REFERENCE.test(reference)) throw denied();
    const [type, id] = reference.split('/') as [string, string];
    const read: Interaction = { kind: 'read', resourceType: type, id, method: 'GET', path: reference, query: '' };
    const granted = smartGrants(scopes, read, { patient: x.principal.patient }) || (await this.inPatientCompartment(x, type, id));
    if (!granted) throw denied();
    if (x.rule.forwardAuthorization && (await this.upstream.getJson(x, `/${reference}`)) === undefined) throw denied();
  }

  /**
   * A patient-scoped read by id the pipeline could not decide (Principal.compartmentRead): served
   * only when the upstream finds the resource with a search pinned to its id and the launch
   * patient. The read itself is forwarded afterwards; between the two a resource could change
   * patients, which the pinned search cannot exclude (documented in docs/security.md).
   */
  async requirePatientRead(x: Exchange): Promise<void> {
    const { resourceType: type, id } = x.interaction;
    if (type === undefined || id === undefined || !(await this.inPatientCompartment(x, type, id))) {
      throw new GatewayError('INSUFFICIENT_SCOPE', `a patient-scoped token reads only resources in the launch patient's compartment`, {
        headers: { 'www-authenticate': 'Bearer error="insufficient_scope"' },
      });
    }
  }

  private async inPatientCompartment(x: Exchange, type: string, id: string): Promise<boolean> {
    const patient = x.principal.patient;
    if (!patient || !/^[A-Za-z0-9\-.]{1,64}$/.test(patient)) return false;
    const scoped = x.smartScopes!.smart.some((s) => s.context === 'patient' && s.restrictions.length === 0 && covers(s, type, 'r'));
    const pins = Object.hasOwn(PATIENT_COMPARTMENT, type) ? PATIENT_COMPARTMENT[type] : undefined;
    if (!scoped || !pins) return false;
    for (const param of ['patient', 'subject'] as const) {
      if (!pins[param]) continue;
      const query = new URLSearchParams({ _id: id, [param]: `Patient/${patient}` });
      const bundle = (await this.upstream.getJson(x, `/${type}?${query.toString()}`)) as
        { resourceType?: unknown; entry?: { resource?: { resourceType?: unknown; id?: unknown } }[] } | undefined;
      if (bundle?.resourceType === 'Bundle' && bundle.entry?.some((e) => e.resource?.resourceType === type && e.resource.id === id))
        return true;
    }
    return false;
  }
}

/** The reference itself is not named: it would tell a caller who may not read it whose content this is. */
function denied(): GatewayError {
  return new GatewayError('INSUFFICIENT_SCOPE', "the Binary's securityContext requires read access to the resource it names");
}

/**
 * A resource's securityContext reference. Absent → undefined. Present but not an object with a
 * string reference (an array, a bare string, an identifier-only Reference) cannot be checked and
 * is refused: 400 on a write, 403 on a read. Never ignored.
 */
export function securityContextOf(resource: WithSecurityContext, use: 'read' | 'write'): string | undefined {
  const sc = resource['securityContext'];
  if (sc === undefined) return undefined;
  const ref = sc && typeof sc === 'object' && !Array.isArray(sc) ? (sc as { reference?: unknown }).reference : undefined;
  if (typeof ref === 'string') return ref;
  if (use === 'write')
    throw new GatewayError(
      'BAD_REQUEST',
      'securityContext must be one Reference with a relative reference, such as {"reference": "Patient/123"}',
    );
  throw new GatewayError('INSUFFICIENT_SCOPE', "the Binary's securityContext cannot be checked");
}
