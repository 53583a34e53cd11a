import { ConfigError } from '../errors/catalogue.js';
import { readSecret } from '../lib/secret.js';

export interface KeySource {
  readonly id: string;
  readonly file?: string | undefined;
  readonly env?: string | undefined;
}

/** HMAC-SHA256 keys shorter than the hash add nothing; shorter ones are refused as a mistake. */
export const MIN_KEY_BYTES = 32;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * The URL signing keys, by id, read from their files or environment variables (never from the
 * policy, which is often in a ConfigMap or a repository). Each holds base64 (or base64url) of at
 * least 32 random bytes (`openssl rand -base64 32`). Read at start and on every reload:
 * rotating is editing the list and reloading.
 */
export function loadSigningKeys(sources: readonly KeySource[], env: NodeJS.ProcessEnv): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const problems: string[] = [];
  sources.forEach((s, i) => {
    const what = `/signedUrls/keys/${i} (key '${s.id}')`;
    try {
      const secret = decodeKey(readSecret(s, what, env));
      if (!secret) throw new Error(`${what}: must be base64 of at least ${MIN_KEY_BYTES} bytes (e.g. \`openssl rand -base64 32\`)`);
      keys.set(s.id, secret);
    } catch (err) {
      problems.push((err as Error).message);
    }
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return keys;
}

function decodeKey(text: string): Buffer | undefined {
  if (!BASE64.test(text)) return undefined;
  const bytes = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return bytes.length >= MIN_KEY_BYTES ? bytes : undefined;
}
