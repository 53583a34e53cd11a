import { readFileSync } from 'node:fs';
import { importJWK, SignJWT, type JWK } from 'jose';
import { loadConfig, type ConfigEnv } from '../config/load.js';
import { embeddedDefaults } from '../config/embedded.js';
import { ConfigError } from '../errors/catalogue.js';

const DEFAULT_TTL_SECONDS = 3600;
/** Dev tokens are for trying a policy out: a day at the most, so one left in a shell history soon dies. */
const MAX_TTL_SECONDS = 86_400;

/**
 * `fhir-binary-gateway token --key FILE --scope SCOPES [--config FILE] [--sub ID] [--patient ID]
 * [--ttl SECONDS]`: mints a development access token signed with the private key in FILE (a JWK or
 * a JWK set holding one private key), for the issuer and audience the policy accepts first. Prints
 * the token alone on stdout. For local policies such as policies/examples/dev.yaml, whose key pair
 * ships with it; a production gateway trusts its identity provider's keys, not a file like this.
 */
export async function runToken(
  values: { config?: string; key?: string; scope?: string; sub?: string; patient?: string; ttl?: string },
  env: ConfigEnv,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const problems: string[] = [];
  if (!values.key) problems.push('token: --key FILE (the private signing key, a JWK) is required');
  if (!values.scope) problems.push('token: --scope "SCOPES" is required (e.g. "user/*.cruds fhir.write")');
  const ttl = values.ttl === undefined ? DEFAULT_TTL_SECONDS : Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS)
    problems.push(`token: --ttl must be whole seconds, 1 to ${MAX_TTL_SECONDS}`);
  if (problems.length > 0) throw new ConfigError(problems);

  const { config, file } = loadConfig(values.config ?? env.GATEWAY_CONFIG, env, embeddedDefaults);
  const issuer = config.auth.issuers[0];
  const audience = config.auth.audiences[0];
  if (!issuer || !audience)
    throw new ConfigError([`${file ?? '(embedded defaults)'}: /auth: names no issuer or audience to mint a token for`]);
  const jwk = privateKeyIn(values.key!);
  const alg = jwk.alg ?? (jwk.kty === 'EC' ? 'ES256' : jwk.kty === 'RSA' ? 'RS256' : undefined);
  if (!alg) throw new ConfigError([`token: ${values.key}: the key names no alg`]);
  const claims: Record<string, unknown> = { scope: values.scope };
  if (values.patient) claims['patient'] = values.patient;
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'at+jwt', ...(jwk.kid ? { kid: jwk.kid } : {}) })
    .setIssuer(issuer)
    .setAudience(audience)
    .setSubject(values.sub ?? 'dev-user')
    .setIssuedAt()
    .setExpirationTime(`${ttl}s`)
    .sign(await importJWK(jwk, alg));
  out.write(`${token}\n`);
  return 0;
}

/** The one private key in a JWK or JWK set file. */
function privateKeyIn(path: string): JWK {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ConfigError([`token: ${path}: ${(err as NodeJS.ErrnoException).code ?? 'not JSON'}`]);
  }
  const keys = (Array.isArray((parsed as { keys?: unknown }).keys) ? (parsed as { keys: JWK[] }).keys : [parsed as JWK]).filter(
    (k) => typeof k === 'object' && k !== null && typeof k.d === 'string',
  );
  if (keys.length !== 1) throw new ConfigError([`token: ${path}: holds ${keys.length} private keys; one is needed`]);
  return keys[0];
}
