import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import { ConfigError } from '../errors/catalogue.js';

/**
 * `fhir-binary-gateway keygen --out DIR`: a signing key pair for local and evaluation setups —
 * DIR/jwks.json (the public key set a policy's `auth.jwksFile` names) and DIR/key.json (the
 * private key `token --key` signs with, owner-only). Existing files are kept (a one-shot
 * container may run it at every start). Production gateways trust their identity provider's keys.
 */
export async function runKeygen(values: { out?: string }, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  if (!values.out) throw new ConfigError(['keygen: --out DIR (where jwks.json and key.json go) is required']);
  const pub = join(values.out, 'jwks.json');
  const priv = join(values.out, 'key.json');
  if (existsSync(pub) && existsSync(priv)) {
    out.write(`${JSON.stringify({ kept: [pub, priv] })}\n`);
    return 0;
  }
  mkdirSync(values.out, { recursive: true });
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const meta = { kid: `key-${new Date().toISOString().slice(0, 10)}`, alg: 'ES256', use: 'sig' };
  writeFileSync(priv, `${JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), ...meta }] }, null, 2)}\n`, { mode: 0o600 });
  writeFileSync(pub, `${JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), ...meta }] }, null, 2)}\n`, { mode: 0o644 });
  out.write(`${JSON.stringify({ written: [pub, priv] })}\n`);
  return 0;
}
