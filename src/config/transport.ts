import type { GatewayConfig } from './types.js';

/**
 * The rules (and `defaultRule`) that require HTTPS on a gateway that can never see a request as
 * HTTPS: it terminates no TLS (`server.tls`) and trusts no proxy to say so (`server.trustedProxies`,
 * X-Forwarded-Proto). Every request they match is refused with INSECURE_TRANSPORT. Not an error
 * (a policy may be written before its TLS is set up, and failing closed is safe), but worth a
 * warning at start and reload: otherwise the first sign is every client getting 403.
 */
export function rulesRefusingEverything(c: GatewayConfig): string[] {
  if (c.server.tls || c.server.trustedProxies.length > 0) return [];
  const d = c.defaultRule.require.https;
  const names = c.rules.filter((r) => r.require?.https ?? d).map((r) => r.name);
  return d ? [...names, 'defaultRule'] : names;
}

/**
 * The files GraphQL API without signed URLs: every upload answers `url: null` and `refreshFileUrl`
 * is refused. Allowed (files can still be bound and read over REST), but rarely what was meant.
 */
export function graphqlWithoutUrls(c: GatewayConfig): string | undefined {
  if (!c.graphql.enabled || c.signedUrls.enabled) return undefined;
  return 'graphql is enabled but signedUrls is not: uploads answer url: null and refreshFileUrl is refused';
}
