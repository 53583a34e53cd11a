import { startFhirUpstream } from '../../src/demo/fhir-upstream.js';
import type { FhirUpstream, FhirUpstreamOptions } from '../../src/demo/fhir-upstream.js';

/** A fresh in-memory FHIR server for one test, closed when the test ends. */
export async function startUpstream(t: { teardown(fn: () => unknown): void }, opts?: FhirUpstreamOptions): Promise<FhirUpstream> {
  const up = await startFhirUpstream(opts);
  t.teardown(() => up.close());
  return up;
}
