import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/** The embedded defaults are policies/default.yaml as shipped: secure (HTTPS, JWT, SMART scopes). */
export const DEFAULT_POLICY_FILE = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url));

export function embeddedDefaults(): unknown {
  return parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8'));
}
