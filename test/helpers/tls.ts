import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface TestCert {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate PEM: pass as `ca` to trust it. */
  readonly cert: Buffer;
}

/**
 * A throw-away self-signed certificate for 127.0.0.1/localhost, made with the openssl CLI in a
 * temporary directory removed when the test ends. EC P-256 keeps generation fast.
 */
export function makeSelfSignedCert(t: { teardown(fn: () => unknown): void }): TestCert {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { dir, certFile, keyFile, cert: readFileSync(certFile) };
}

export interface HttpsResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** What the TLS handshake settled on, e.g. 'TLSv1.3'. */
  readonly protocol: string | null;
}

/** One HTTPS request with node:https (fetch cannot pin TLS versions or trust a custom CA). */
export function httpsRequest(
  url: string,
  opts: {
    ca?: Buffer;
    method?: string;
    headers?: OutgoingHttpHeaders;
    body?: string;
    minVersion?: 'TLSv1.2' | 'TLSv1.3';
    maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  } = {},
): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: opts.method ?? 'GET',
        headers: opts.headers,
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : { rejectUnauthorized: false }),
        ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      },
      (res) => {
        const protocol = (res.socket as TLSSocket).getProtocol();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), protocol }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}
