import type { GatewayConfig } from '../config/types.js';

/**
 * What a reload cannot apply, as the parts of the configuration built once at start: the
 * listeners (address, TLS files named — their content is re-read on change — request timeout),
 * the store, the upstream and its connection pool, the admin API's listener, the audit trail's
 * destination, the observability listener and exporter. Everything else (rules, auth, limits,
 * content, inflate, retention, trusted proxies, the spool directory, the shutdown deadline,
 * logging) applies to the next request.
 */
function fixedParts(c: GatewayConfig): Record<string, unknown> {
  const { trustedProxies: _tp, spoolDir: _sd, shutdownTimeoutMs: _st, ...server } = c.server;
  return {
    server,
    upstream: c.upstream,
    storage: c.storage,
    admin: { listen: c.admin.listen },
    audit: c.audit,
    observability: c.observability,
    // The files GraphQL API's route is made at start; turning it on or off applies at once.
    graphql: { path: c.graphql.path },
  };
}

/** The key paths (`storage.s3.bucket`, `server.port`) whose change a reload leaves for the next start. */
export function restartOnlyChanges(before: GatewayConfig, after: GatewayConfig): string[] {
  const out: string[] = [];
  diff(fixedParts(before), fixedParts(after), '', out);
  // Its routes are registered at start only when it is on: turning it off applies (they answer 404), on does not.
  if (!before.admin.enabled && after.admin.enabled) out.push('admin.enabled');
  return out;
}

function diff(a: unknown, b: unknown, path: string, out: string[]): void {
  const objects = isObject(a) && isObject(b);
  if (!objects) {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(path);
    return;
  }
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) diff(a[k], b[k], path ? `${path}.${k}` : k, out);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
