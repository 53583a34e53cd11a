import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.js';
import type { Interaction } from '../fhir/interaction.js';
import type { RequestContext } from '../http/context.js';
import type { EffectiveRule } from '../security/policy.js';
import { covers, PATIENT_COMPARTMENT, smartGrants, type ScopeSet } from '../security/scopes.js';
import { MAX_RESOURCE_BYTES, RELATIVE_REFERENCE, type ContentIo, type FhirResource } from './content-io.js';
import { readJson, sendUpstream, UpstreamFailure } from './upstream-exchange.js';

/** Who is asking, as the security pipeline verified it. */
export interface Caller {
  /** Undefined when the rule asks for no token scopes: there is then no scope model to apply. */
  readonly scopes: ScopeSet | undefined;
  /** The token's patient launch context, if any. */
  readonly patient: string | undefined;
}

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
 * ties the Binary to the patient.
 */
export class SecurityContextGuard {
  constructor(private readonly io: ContentIo) {}

  /** Whether user/system scopes alone grant the interaction (no patient context needed). */
  static broad(caller: Caller, i: Interaction): boolean {
    return !caller.scopes || smartGrants(caller.scopes, i, {});
  }

  /** Unrestricted user/system read on every type: every securityContext check would pass on scopes. */
  static readsEverything(caller: Caller): boolean {
    return (
      !caller.scopes ||
      caller.scopes.smart.some(
        (s) => s.context !== 'patient' && s.restrictions.length === 0 && s.resourceType === '*' && s.permissions.includes('r'),
      )
    );
  }

  /** Reading a Binary: its securityContext decides; without one, only user/system scopes reach it. */
  async binaryRead(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    i: Interaction,
    caller: Caller,
    binary: FhirResource,
  ): Promise<void> {
    const sc = securityContextOf(binary, 'read');
    if (sc !== undefined) return this.require(req, ctx, rule, caller, sc);
    if (!SecurityContextGuard.broad(caller, i))
      throw new GatewayError(
        'INSUFFICIENT_SCOPE',
        'a patient-scoped token may read only Binaries whose securityContext is in the patient compartment',
      );
  }

  /** Throws INSUFFICIENT_SCOPE unless the caller may read `reference` (see the class comment). */
  async require(req: IncomingMessage, ctx: RequestContext, rule: EffectiveRule, caller: Caller, reference: string): Promise<void> {
    if (!caller.scopes) return;
    if (!RELATIVE_REFERENCE.test(reference)) throw denied(reference);
    const [type, id] = reference.split('/') as [string, string];
    const read: Interaction = { interaction: 'read', resourceType: type, id, method: 'GET', path: reference, query: '' };
    const granted =
      smartGrants(caller.scopes, read, { patient: caller.patient }) || (await this.inPatientCompartment(req, ctx, rule, caller, type, id));
    if (!granted) throw denied(reference);
    if (rule.forwardAuthorization && !(await this.upstreamLetsRead(req, ctx, rule, reference))) throw denied(reference);
  }

  private async inPatientCompartment(
    req: IncomingMessage,
    ctx: RequestContext,
    rule: EffectiveRule,
    caller: Caller,
    type: string,
    id: string,
  ): Promise<boolean> {
    const patient = caller.patient;
    if (!patient || !/^[A-Za-z0-9\-.]{1,64}$/.test(patient)) return false;
    const scoped = caller.scopes!.smart.some((s) => s.context === 'patient' && s.restrictions.length === 0 && covers(s, type, 'r'));
    const pins = Object.hasOwn(PATIENT_COMPARTMENT, type) ? PATIENT_COMPARTMENT[type] : undefined;
    if (!scoped || !pins) return false;
    for (const param of ['patient', 'subject'] as const) {
      if (!pins[param]) continue;
      const query = new URLSearchParams({ _id: id, [param]: `Patient/${patient}` });
      const bundle = (await this.get(req, ctx, rule, `/${type}?${query.toString()}`)) as
        { resourceType?: unknown; entry?: { resource?: { resourceType?: unknown; id?: unknown } }[] } | undefined;
      if (bundle?.resourceType === 'Bundle' && bundle.entry?.some((e) => e.resource?.resourceType === type && e.resource.id === id))
        return true;
    }
    return false;
  }

  private async upstreamLetsRead(req: IncomingMessage, ctx: RequestContext, rule: EffectiveRule, reference: string): Promise<boolean> {
    return (await this.get(req, ctx, rule, `/${reference}`)) !== undefined;
  }

  /** A small GET to the upstream as the caller; undefined unless it answers 200. */
  private async get(req: IncomingMessage, ctx: RequestContext, rule: EffectiveRule, path: string): Promise<unknown> {
    let up: IncomingMessage;
    try {
      up = await sendUpstream(
        this.io.upstream.request(req, ctx, rule.forwardAuthorization, 'GET', path, { accept: 'application/fhir+json' }),
      );
    } catch (err) {
      throw err instanceof UpstreamFailure ? err.gatewayError : err;
    }
    if (up.statusCode !== 200) {
      up.resume();
      return undefined;
    }
    return readJson(up, MAX_RESOURCE_BYTES);
  }
}

/** The reference itself is not named: it would tell a caller who may not read it whose content this is. */
function denied(_reference: string): GatewayError {
  return new GatewayError('INSUFFICIENT_SCOPE', "the Binary's securityContext requires read access to the resource it names");
}

/**
 * A resource's securityContext reference. Absent → undefined. Present but not an object with a
 * string reference (an array, a bare string, an identifier-only Reference) cannot be checked and
 * is refused: 400 on a write, 403 on a read. Never ignored.
 */
export function securityContextOf(resource: FhirResource, use: 'read' | 'write'): string | undefined {
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
