import type { SecurityContextGuard } from '../security/security-context.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { Forwarder } from '../upstream/forwarder.js';
import type { BlobLifecycle } from './blob-lifecycle.js';
import type { RawResponder } from './raw-response.js';
import type { UpstreamResources } from './upstream-resources.js';

/** What the binary plane's handlers are built with (src/app/server.ts makes them once). */
export interface PlaneDeps {
  readonly store: BlobStore;
  readonly resources: UpstreamResources;
  readonly blobs: BlobLifecycle;
  readonly raw: RawResponder;
  readonly guard: SecurityContextGuard;
  readonly forwarder: Forwarder;
  /** The public FHIR base (no trailing '/'): where links the plane hands out point. */
  readonly publicBase: string;
}
