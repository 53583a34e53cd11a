// Writes a JWKS file and prints an RS256 token with SMART scopes for the benchmark's gateway.
// Usage: mint-token.mjs JWKS_FILE [SCOPE] (default: what the pass-through bench reads with).
import { writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

const [jwksFile, scope = 'user/Patient.rs fhir.write'] = process.argv.slice(2);
const { publicKey, privateKey } = await generateKeyPair('RS256');
writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'bench', alg: 'RS256', use: 'sig' }] }));
const token = await new SignJWT({ scope })
  .setProtectedHeader({ alg: 'RS256', kid: 'bench' })
  .setSubject('bench-user')
  .setIssuer('https://issuer.bench')
  .setAudience('fhir-binary-gateway')
  .setIssuedAt()
  .setExpirationTime('2h')
  .sign(privateKey);
process.stdout.write(`${token}\n`);
