import { existsSync } from 'node:fs';
import { parseRange } from '../security/ip.js';
import type { GatewayConfig, RuleRequire } from './types.js';

/** Checks the schema cannot express. Returns human-readable problems (file, key path, what was expected). */
export function checkSemantics(c: GatewayConfig, origin: string): string[] {
  const problems: string[] = [];
  const at = (path: string, msg: string) => problems.push(`${origin}: ${path}: ${msg}`);

  const checkRanges = (path: string, list: readonly string[] | undefined) => {
    list?.forEach((r, i) => {
      if (!parseRange(r)) at(`${path}/${i}`, `'${r}' is not an IP address or CIDR range (IPv4 must be four-part decimal)`);
    });
  };
  const checkRequire = (path: string, req: Partial<RuleRequire> | undefined) => {
    checkRanges(`${path}/ipAllow`, req?.ipAllow);
    checkRanges(`${path}/ipDeny`, req?.ipDeny);
  };

  checkRanges('/server/trustedProxies', c.server.trustedProxies);
  checkRequire('/defaultRule/require', c.defaultRule.require);
  const names = new Set<string>();
  c.rules.forEach((rule, i) => {
    checkRequire(`/rules/${i}/require`, rule.require);
    if (names.has(rule.name)) at(`/rules/${i}/name`, `duplicate rule name '${rule.name}'`);
    names.add(rule.name);
  });

  for (const key of ['publicBaseUrl'] as const) {
    const v = c.server[key];
    if (v !== undefined && !URL.canParse(v)) at(`/server/${key}`, 'must be an absolute URL');
    if (v !== undefined && URL.canParse(v) && (new URL(v).search || new URL(v).hash)) at(`/server/${key}`, 'must not have a query or fragment');
  }
  if (c.upstream.url !== undefined && !URL.canParse(c.upstream.url)) at('/upstream/url', 'must be an absolute URL');

  const needsAuth = c.defaultRule.require.auth || c.rules.some((r) => r.require?.auth ?? c.defaultRule.require.auth);
  if (c.auth.jwksUri && c.auth.jwksFile) at('/auth', 'set jwksUri or jwksFile, not both');
  if (needsAuth && !c.auth.jwksUri && !c.auth.jwksFile) {
    at('/auth', 'jwksUri or jwksFile is required while any rule requires auth');
  }
  if (needsAuth && c.auth.issuers.length === 0) at('/auth/issuers', 'must list at least one issuer while any rule requires auth');
  if (needsAuth && c.auth.audiences.length === 0) at('/auth/audiences', 'must list at least one audience while any rule requires auth');
  if (c.auth.jwksFile && !existsSync(c.auth.jwksFile)) at('/auth/jwksFile', `file not found: ${c.auth.jwksFile}`);
  if (c.server.tls) {
    if (!existsSync(c.server.tls.certFile)) at('/server/tls/certFile', `file not found: ${c.server.tls.certFile}`);
    if (!existsSync(c.server.tls.keyFile)) at('/server/tls/keyFile', `file not found: ${c.server.tls.keyFile}`);
  }
  return problems;
}
