// What tests of signed file URLs share: a URL signing key on disk, an S3 store the gateway reaches
// with credentials from the environment (as it must: never in the policy), `$file-url` answers.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { Stack } from './binary-stack.js';
import { startS3Server, type S3Server } from './s3-server.js';

/** A directory of URL signing keys (base64 of 32 random bytes each), removed with the test. */
export interface UrlKeys {
  readonly dir: string;
  /** Writes a new key `id` and returns its file. */
  file(id: string): string;
  /** The secret of key `id`, for URLs a test signs itself. */
  secret(id: string): Buffer;
}

export function urlKeys(t: Test): UrlKeys {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-url-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const secrets = new Map<string, Buffer>();
  return {
    dir,
    file(id) {
      const secret = randomBytes(32);
      secrets.set(id, secret);
      const f = join(dir, `${id}.key`);
      writeFileSync(f, `${secret.toString('base64')}\n`, { mode: 0o600 });
      return f;
    },
    secret: (id) => secrets.get(id)!,
  };
}

/** `signedUrls` on, one key `k1` from `keys`, `extra` over it. */
export function signedUrlsConfig(keys: UrlKeys, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { enabled: true, keys: [{ id: 'k1', file: keys.file('k1') }], activeKey: 'k1', ...extra };
}

/** An s3rver and the gateway's `storage` section for it, its credentials in variables the config names. */
export async function s3Storage(t: Test): Promise<{ srv: S3Server; storage: Record<string, unknown> }> {
  const srv = await startS3Server(t);
  const env = `FBG_TEST_S3_${randomBytes(6).toString('hex').toUpperCase()}`;
  process.env[`${env}_ID`] = srv.credentials.accessKeyId;
  process.env[`${env}_SECRET`] = srv.credentials.secretAccessKey;
  t.teardown(() => {
    delete process.env[`${env}_ID`];
    delete process.env[`${env}_SECRET`];
  });
  return {
    srv,
    storage: {
      driver: 's3',
      s3: {
        bucket: srv.bucket,
        endpoint: srv.endpoint,
        forcePathStyle: true,
        accessKeyIdEnv: `${env}_ID`,
        secretAccessKeyEnv: `${env}_SECRET`,
      },
    },
  };
}

/** The parameters of a `$file-url` answer by name (url, expiresAt, startsAt, policy, keyId, via). */
export async function fileUrlParams(r: Response): Promise<Record<string, string | undefined>> {
  const p = (await r.json()) as {
    parameter: { name: string; valueUrl?: string; valueInstant?: string; valueString?: string; valueCode?: string }[];
  };
  return Object.fromEntries(p.parameter.map((x) => [x.name, x.valueUrl ?? x.valueInstant ?? x.valueString ?? x.valueCode]));
}

/** The URL `$file-url` gave (as the stack's caller), moved from the public base to the test listener. */
export async function fileUrl(s: Stack, path: string, auth: Record<string, string> = s.auth): Promise<string> {
  const r = await fetch(`${s.gw.base}/${path}`, { headers: auth });
  if (r.status !== 200) throw new Error(`$file-url: ${r.status} ${await r.text()}`);
  return (await fileUrlParams(r))['url']!.replace('http://gateway.test', s.gw.url);
}
