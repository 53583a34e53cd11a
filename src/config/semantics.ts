import { existsSync } from 'node:fs';
import { canonicalResourceType, isResourceType } from '../fhir/resource-types.js';
import { parseRange } from '../lib/ip.js';
import { parseDuration } from '../lib/duration.js';
import type { GatewayConfig, RuleRequire } from './types.js';

/** Where a rule was written: the file and its index under that file's `rules`. */
export interface RuleOrigin {
  readonly file: string;
  readonly index: number;
}

/**
 * Checks the schema cannot express. Returns human-readable problems (file, key path, what was
 * expected). `ruleOrigins[i]` says where `c.rules[i]` came from (an included file); by default
 * every rule is from `origin`.
 */
export function checkSemantics(c: GatewayConfig, origin: string, ruleOrigins: readonly RuleOrigin[] = []): string[] {
  const problems: string[] = [];
  const at = (path: string, msg: string) => problems.push(`${origin}: ${path}: ${msg}`);
  const ruleAt = (i: number) => {
    const o = ruleOrigins[i] ?? { file: origin, index: i };
    return (path: string, msg: string) => problems.push(`${o.file}: /rules/${o.index}${path}: ${msg}`);
  };

  const checkRanges = (path: string, list: readonly string[] | undefined, report = at) => {
    list?.forEach((r, i) => {
      if (!parseRange(r)) report(`${path}/${i}`, `'${r}' is not an IP address or CIDR range (IPv4 must be four-part decimal)`);
    });
  };
  const checkRequire = (path: string, req: Partial<RuleRequire> | undefined, report = at) => {
    checkRanges(`${path}/ipAllow`, req?.ipAllow, report);
    checkRanges(`${path}/ipDeny`, req?.ipDeny, report);
  };

  checkRanges('/server/trustedProxies', c.server.trustedProxies);
  checkRequire('/defaultRule/require', c.defaultRule.require);
  const names = new Set<string>();
  c.rules.forEach((rule, i) => {
    const report = ruleAt(i);
    checkRequire('/require', rule.require, report);
    if (names.has(rule.name)) report('/name', `duplicate rule name '${rule.name}'`);
    names.add(rule.name);
    // A misspelt type would make the rule silently never apply: a tightening rule would fail open.
    rule.match.resourceTypes?.forEach((type, j) => {
      if (type === '*' || isResourceType(type)) return;
      const canonical = canonicalResourceType(type);
      report(`/match/resourceTypes/${j}`, `'${type}' is not a FHIR R4 resource type${canonical ? ` (did you mean '${canonical}'?)` : ''}`);
    });
  });

  for (const [op, returns] of Object.entries(c.operations)) {
    if (typeof returns === 'string') continue;
    returns.types.forEach((type, j) => {
      if (!isResourceType(type)) at(`/operations/${op}/types/${j}`, `'${type}' is not a FHIR R4 resource type`);
    });
  }

  for (const key of ['publicBaseUrl'] as const) {
    const v = c.server[key];
    if (v !== undefined && !URL.canParse(v)) at(`/server/${key}`, 'must be an absolute URL');
    if (v !== undefined && URL.canParse(v) && (new URL(v).search || new URL(v).hash))
      at(`/server/${key}`, 'must not have a query or fragment');
  }
  if (c.upstream.url !== undefined && !URL.canParse(c.upstream.url)) at('/upstream/url', 'must be an absolute URL');
  // Credentials in the URL would be logged with it and are not sent by the proxy anyway.
  if (
    c.upstream.url !== undefined &&
    URL.canParse(c.upstream.url) &&
    (new URL(c.upstream.url).username || new URL(c.upstream.url).password)
  ) {
    at('/upstream/url', 'must not contain credentials (user:password@)');
  }
  c.upstream.aliases.forEach((a, i) => {
    if (!URL.canParse(a)) at(`/upstream/aliases/${i}`, 'must be an absolute URL');
  });

  // A rule that requires a token, SMART scopes or literal scopes can only ever be met with a
  // verified token: without a key source it would refuse everything, which is a configuration error.
  const d = c.defaultRule.require;
  const usesTokens = (r: Partial<typeof d> | undefined) =>
    (r?.auth ?? d.auth) || (r?.smart ?? d.smart) || (r?.scopes ?? d.scopes).length > 0;
  const needsAuth = usesTokens(d) || c.rules.some((r) => usesTokens(r.require));
  if (c.auth.jwksUri && c.auth.jwksFile) at('/auth', 'set jwksUri or jwksFile, not both');
  if (needsAuth && !c.auth.jwksUri && !c.auth.jwksFile) {
    at('/auth', 'jwksUri or jwksFile is required while any rule requires auth, smart or scopes');
  }
  if (needsAuth && c.auth.issuers.length === 0)
    at('/auth/issuers', 'must list at least one issuer while any rule requires auth, smart or scopes');
  if (needsAuth && c.auth.audiences.length === 0)
    at('/auth/audiences', 'must list at least one audience while any rule requires auth, smart or scopes');
  if (c.auth.jwksFile && !existsSync(c.auth.jwksFile)) at('/auth/jwksFile', `file not found: ${c.auth.jwksFile}`);
  if (c.server.tls) {
    if (!existsSync(c.server.tls.certFile)) at('/server/tls/certFile', `file not found: ${c.server.tls.certFile}`);
    if (!existsSync(c.server.tls.keyFile)) at('/server/tls/keyFile', `file not found: ${c.server.tls.keyFile}`);
  }
  checkStorage(c, at);
  checkSignedUrls(c, at);
  checkGraphql(c, at);
  checkRetention(c, at);
  checkListeners(c, at);
  checkRanges('/admin/ipAllow', c.admin.ipAllow);
  if (c.audit.destination === 'file' && c.audit.file === undefined) at('/audit/file', "is required when /audit/destination is 'file'");
  Object.keys(c.content.allowedTypes).forEach((type) => {
    if (!isResourceType(type)) at(`/content/allowedTypes/${type}`, `'${type}' is not a FHIR R4 resource type`);
  });
  return problems;
}

/**
 * The gateway's own listeners on one port with the public one (or each other) would fail the start
 * with EADDRINUSE: said by --check instead. Port 0 (any free port) never collides. Hosts are
 * compared as written, and a wildcard (0.0.0.0, ::) overlaps every address.
 */
function checkListeners(c: GatewayConfig, at: (path: string, msg: string) => void): void {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
  const taken: { path: string; host: string; port: number }[] = [{ path: '/server', host: c.server.host, port: c.server.port }];
  const others = [
    ['/admin/listen', c.admin.listen],
    ['/observability/listen', c.observability.listen],
  ] as const;
  for (const [path, l] of others) {
    if (!l || l.port === 0) continue;
    const clash = taken.find((x) => x.port === l.port && (x.host === l.host || wildcard(x.host) || wildcard(l.host)));
    if (clash)
      at(
        `${path}/port`,
        `${l.port} is also ${clash.path === '/server' ? 'the public listener' : clash.path}'s port on ${clash.host}: the gateway could not start`,
      );
    taken.push({ path, host: l.host, port: l.port });
  }
}

function checkStorage(c: GatewayConfig, at: (path: string, msg: string) => void): void {
  const s = c.storage;
  if (s.driver === 's3' && !s.s3) at('/storage/s3', "is required when storage.driver is 's3'");
  if (s.driver === 'azure' && !s.azure) at('/storage/azure', "is required when storage.driver is 'azure'");
  if (s.s3 && (s.s3.accessKeyIdEnv === undefined) !== (s.s3.secretAccessKeyEnv === undefined)) {
    at('/storage/s3', 'set both accessKeyIdEnv and secretAccessKeyEnv, or neither (the SDK default chain)');
  }
  if (s.azure) {
    const forms = [s.azure.connectionStringEnv, s.azure.accountKeyEnv, s.azure.sasTokenEnv].filter((v) => v !== undefined).length;
    if (forms !== 1)
      at('/storage/azure', 'set exactly one of connectionStringEnv, accountKeyEnv (with accountName) or sasTokenEnv (with url)');
    if (s.azure.accountKeyEnv && !s.azure.accountName) at('/storage/azure/accountName', 'is required with accountKeyEnv');
    if (s.azure.sasTokenEnv && !s.azure.url) at('/storage/azure/url', 'is required with sasTokenEnv');
  }
  const enc = s.filesystem.encryption;
  if (enc) {
    const ids = enc.keys.map((k) => k.id);
    if (!ids.includes(enc.activeKey)) at('/storage/filesystem/encryption/activeKey', `'${enc.activeKey}' is not among the keys`);
    if (new Set(ids).size !== ids.length) at('/storage/filesystem/encryption/keys', 'key ids must be unique');
    enc.keys.forEach((k, i) => {
      if ((k.file === undefined) === (k.env === undefined))
        at(`/storage/filesystem/encryption/keys/${i}`, 'set exactly one of file or env');
      if (k.file && !existsSync(k.file)) at(`/storage/filesystem/encryption/keys/${i}/file`, `file not found: ${k.file}`);
    });
  }
}

/** Retention classes: distinct names, real resource types (a typo would silently never match). */
function checkRetention(c: GatewayConfig, at: (path: string, msg: string) => void): void {
  const seen = new Set<string>();
  c.retention.classes.forEach((cls, i) => {
    if (seen.has(cls.name) || cls.name === 'unlinked') at(`/retention/classes/${i}/name`, `'${cls.name}' is already a class name`);
    seen.add(cls.name);
    cls.resourceTypes?.forEach((t, j) => {
      if (!isResourceType(t)) {
        const hint = canonicalResourceType(t);
        at(`/retention/classes/${i}/resourceTypes/${j}`, `'${t}' is not a FHIR resource type${hint ? ` (did you mean '${hint}'?)` : ''}`);
      }
    });
  });
}

/** Signed file URLs: a key to sign with among the keys, unique ids, a default policy that exists, windows in order. */
/**
 * The files GraphQL API's path is the gateway's own: never one a FHIR request could have (under
 * the FHIR base; with the base at the root, a type, `$operation`, `_history`, `metadata`), nor a
 * path the gateway answers itself (health, metrics, the admin API).
 */
function checkGraphql(c: GatewayConfig, at: (path: string, msg: string) => void): void {
  const path = c.graphql.path.replace(/\/+$/, '');
  const base = c.server.publicBaseUrl ? new URL(c.server.publicBaseUrl).pathname.replace(/\/+$/, '') : '';
  const first = path.split('/')[1] ?? '';
  const fhir = base ? path === base || path.startsWith(`${base}/`) : /^[A-Z$_]/.test(first) || first === 'metadata';
  if (fhir || path === '' || ['healthz', 'readyz', 'livez', 'metrics', '_admin'].includes(first))
    at('/graphql/path', `'${c.graphql.path}' is a path of the FHIR API or of the gateway's own: choose another (e.g. /graphql)`);
}

function checkSignedUrls(c: GatewayConfig, at: (path: string, msg: string) => void): void {
  const su = c.signedUrls;
  const keyIds = su.keys.map((k) => k.id);
  if (new Set(keyIds).size !== keyIds.length) at('/signedUrls/keys', 'key ids must be unique');
  su.keys.forEach((k, i) => {
    if ((k.file === undefined) === (k.env === undefined)) at(`/signedUrls/keys/${i}`, 'set exactly one of file or env');
    if (k.file && !existsSync(k.file)) at(`/signedUrls/keys/${i}/file`, `file not found: ${k.file}`);
  });
  if (su.enabled && su.keys.length === 0) at('/signedUrls/keys', 'at least one key is required while signed URLs are enabled');
  if (su.enabled && su.activeKey === undefined) at('/signedUrls/activeKey', 'is required while signed URLs are enabled');
  if (su.activeKey !== undefined && !keyIds.includes(su.activeKey)) at('/signedUrls/activeKey', `'${su.activeKey}' is not among the keys`);
  const policyIds = su.policies.map((p) => p.id);
  if (new Set(policyIds).size !== policyIds.length) at('/signedUrls/policies', 'policy ids must be unique');
  if (su.defaultPolicy !== undefined && !policyIds.includes(su.defaultPolicy))
    at('/signedUrls/defaultPolicy', `'${su.defaultPolicy}' is not among the policies`);
  su.policies.forEach((p, i) => {
    if (p.notAfter !== undefined && Number.isNaN(Date.parse(p.notAfter))) at(`/signedUrls/policies/${i}/notAfter`, 'is not a valid time');
  });
  if (parseDuration(su.defaultWindow)! > parseDuration(su.maxWindow)!) at('/signedUrls/defaultWindow', 'must not be longer than maxWindow');
  // A signed URL is a bearer credential: a week is already long (the seed's windows are minutes).
  const WEEK = 7 * 24 * 3_600_000;
  if (parseDuration(su.maxWindow)! > WEEK) at('/signedUrls/maxWindow', 'at most 7d: a signed URL is a bearer credential');
  su.policies.forEach((p, i) => {
    if (parseDuration(p.maxWindow)! > WEEK) at(`/signedUrls/policies/${i}/maxWindow`, 'at most 7d: a signed URL is a bearer credential');
  });
  if (su.store.enabled && c.storage.driver === 'filesystem')
    at('/signedUrls/store/enabled', 'the filesystem store serves no URLs of its own: store URLs need s3 or azure');
  // Azure keeps at most five stored access policies on a container, where its SASes find them.
  if (su.store.enabled && c.storage.driver === 'azure' && su.policies.length > 5)
    at('/signedUrls/policies', 'at most 5 with Azure store URLs (a container holds at most five stored access policies)');
}
