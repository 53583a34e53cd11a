import type { Metrics } from '../telemetry/metrics.js';
import { endSpan, type Tracing } from '../telemetry/tracing.js';
import type { BlobStore } from './blob-store.js';

/** The store's calls that are timed; the others (driver) pass as they are. */
const TIMED = new Set(['put', 'get', 'head', 'delete', 'list', 'setMeta', 'openPlainFile', 'claim', 'unclaim', 'claims', 'leftovers']);

/**
 * The store as the gateway uses it, each call timed into `store` metrics (a read until its content
 * starts: the bytes are the client's pace) and traced as a child span of the request's. One
 * wrapper for every driver; the drivers stay free of telemetry.
 */
export function instrumentStore(store: BlobStore, metrics: Metrics, tracing: Tracing): BlobStore {
  if (!metrics.enabled && !tracing.enabled) return store;
  return new Proxy(store, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (typeof key !== 'string' || !TIMED.has(key) || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const started = performance.now();
        const span = tracing.child(`store ${key}`, { 'fbg.store.driver': target.driver });
        const done = (failed: Error | undefined) => {
          metrics.store(key, (performance.now() - started) / 1000, failed !== undefined);
          endSpan(span, failed ?? 200);
        };
        const result = (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        return result.then(
          (v) => {
            done(undefined);
            return v;
          },
          (err: unknown) => {
            done(err instanceof Error ? err : new Error(String(err)));
            throw err;
          },
        );
      };
    },
  });
}
