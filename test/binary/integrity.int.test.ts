// Integrity on every read (issue 13), filesystem store: plain, and sealed at rest (AES-GCM
// authenticates every chunk). The S3 and Azure drivers run the same scenario in their own files.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { integrityScenario } from '../helpers/integrity-scenario.js';

function fsStore(t: { teardown(fn: () => unknown): void }, encrypted: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-integrity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = `FBG_TEST_KEY_${randomBytes(6).toString('hex').toUpperCase()}`;
  if (encrypted) {
    process.env[env] = randomBytes(32).toString('base64');
    t.teardown(() => delete process.env[env]);
  }
  return {
    storage: {
      driver: 'filesystem',
      filesystem: { directory: dir, ...(encrypted ? { encryption: { activeKey: 'k1', keys: [{ id: 'k1', env }] } } : {}) },
    },
    // Plain: the bit at `at`. Sealed: a bit `at` bytes past the header, inside the chunk that holds it or an earlier one: either fails authentication.
    corrupt: async (id: string, at: number) => {
      const path = join(dir, id.slice(0, 2), id.slice(2, 4), `${id}.blob`);
      const b = readFileSync(path);
      b[encrypted ? Math.min(b.length - 1, 256 + at) : at] ^= 0x04;
      writeFileSync(path, b);
    },
  };
}

integrityScenario(t, 'filesystem', async (t) => fsStore(t, false));
integrityScenario(t, 'filesystem (encrypted at rest)', async (t) => fsStore(t, true));
