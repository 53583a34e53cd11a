// Shared by the attack tests: fixtures written around the gateway, Bundles, small readers.
import type { Stack } from '../helpers/binary-stack.js';

export const BUNDLE_RULE = { name: 'bundles', match: { interactions: ['batch', 'transaction'] }, require: { smart: false } };

/** Creates directly in the upstream (around the gateway) and returns the id. */
export async function direct(s: Stack, resource: Record<string, unknown>): Promise<string> {
  const r = await fetch(`${s.up.url}/${resource.resourceType as string}`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json' },
    body: JSON.stringify(resource),
  });
  return ((await r.json()) as { id: string }).id;
}

export type Bundle = { entry?: { resource?: Record<string, any>; response?: { status?: string; location?: string } }[] };

export function bundle(s: Stack, headers: Record<string, string>, entries: unknown[], type = 'batch'): Promise<Response> {
  return fetch(s.gw.base, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'Bundle', type, entry: entries }),
  });
}

/** The id in a transaction-response location (`Binary/{id}` or `Binary/{id}/_history/1`). */
export const locationId = (b: Bundle, i = 0): string | undefined => b.entry?.[i]?.response?.location?.split('/')[1];

/** A governed Binary uploaded the proper way (raw, through the gateway): its bytes are in the store. */
export async function uploadGoverned(s: Stack, content: Buffer, contentType: string, securityContext?: string): Promise<string> {
  const r = await fetch(`${s.gw.base}/Binary`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': contentType, ...(securityContext ? { 'x-security-context': securityContext } : {}) },
    body: content,
  });
  await r.arrayBuffer();
  if (r.status !== 201) throw new Error(`upload failed: ${r.status}`);
  return (r.headers.get('location') ?? '').split('/')[5];
}

/** The stable code of an OperationOutcome body (issue[0].details.coding[0].code, docs/errors.md); undefined for anything else. */
export function outcomeCodeOf(body: string): string | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body);
  } catch {
    return undefined;
  }
  const oo = v as { resourceType?: string; issue?: { details?: { coding?: { code?: string }[] } }[] } | null;
  return oo?.resourceType === 'OperationOutcome' ? oo.issue?.[0]?.details?.coding?.[0]?.code : undefined;
}

/**
 * What an attack test pins about an answer: its HTTP status and its OperationOutcome code
 * (undefined when the body is not an OperationOutcome), the body read to its end.
 */
export async function outcome(p: Promise<Response> | Response): Promise<[status: number, code: string | undefined]> {
  const r = await p;
  return [r.status, outcomeCodeOf(await r.text())];
}

/**
 * Two patients; the other one's Device (named SECRET-PUMP-OF-OTHER), referenced by an Observation
 * of mine: a `$everything` server brings it along, and only its `patient` reference shows whose it
 * is. Resolves with my patient id.
 */
export async function otherPatientsDevice(s: Stack): Promise<string> {
  const me = await direct(s, { resourceType: 'Patient', name: [{ family: 'Me' }] });
  const other = await direct(s, { resourceType: 'Patient', name: [{ family: 'Other' }] });
  const device = await direct(s, {
    resourceType: 'Device',
    status: 'active',
    patient: { reference: `Patient/${other}` },
    deviceName: [{ name: 'SECRET-PUMP-OF-OTHER', type: 'user-friendly-name' }],
  });
  await direct(s, {
    resourceType: 'Observation',
    status: 'final',
    code: { text: 'x' },
    subject: { reference: `Patient/${me}` },
    device: { reference: `Device/${device}` },
  });
  return me;
}
