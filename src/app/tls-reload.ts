import { createHash } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';

/** Anything serving TLS whose certificate can be swapped in place (https.Server, tls.Server). */
interface SecureServer {
  setSecureContext(options: { cert: Buffer; key: Buffer; minVersion?: 'TLSv1.2' | 'TLSv1.3' }): void;
}

/** How often the files are looked at: a Kubernetes Secret update lands within its kubelet sync anyway. */
const POLL_MS = 5_000;

/**
 * The gateway's certificate and key re-read when their files change (a rotated Kubernetes Secret,
 * a renewed certificate): new connections get the new pair, open ones keep theirs, no restart.
 * Both files are read before anything is swapped; a pair that does not load is logged and the
 * one in use stays. `reload()` does the same at once (SIGHUP).
 */
export class TlsReloader {
  private current: string;
  private readonly onChange = (): void => this.reload();

  constructor(
    private readonly tls: NonNullable<GatewayConfig['server']['tls']>,
    private readonly servers: readonly SecureServer[],
    private readonly log: Logger,
  ) {
    this.current = this.fingerprint();
    for (const f of [tls.certFile, tls.keyFile]) watchFile(f, { interval: POLL_MS, persistent: false }, this.onChange);
  }

  reload(): void {
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(this.tls.certFile);
      key = readFileSync(this.tls.keyFile);
    } catch (err) {
      this.log.error(
        { files: [this.tls.certFile, this.tls.keyFile], cause: (err as NodeJS.ErrnoException).code },
        'TLS files could not be read: the certificate in use stays',
      );
      return;
    }
    const next = digest(cert, key);
    if (next === this.current) return;
    try {
      for (const s of this.servers) s.setSecureContext({ cert, key, minVersion: this.tls.minVersion });
    } catch (err) {
      // A certificate and key that do not match (one file rewritten, the other not yet): wait for the next change.
      this.log.error(
        { certFile: this.tls.certFile, cause: (err as Error).message.slice(0, 200) },
        'TLS files do not load: the certificate in use stays',
      );
      return;
    }
    this.current = next;
    this.log.info({ certFile: this.tls.certFile }, 'TLS certificate reloaded');
  }

  close(): void {
    unwatchFile(this.tls.certFile, this.onChange);
    unwatchFile(this.tls.keyFile, this.onChange);
  }

  private fingerprint(): string {
    try {
      return digest(readFileSync(this.tls.certFile), readFileSync(this.tls.keyFile));
    } catch {
      return '';
    }
  }
}

/** Whether the pair changed, without keeping the key's bytes around. */
function digest(cert: Buffer, key: Buffer): string {
  return createHash('sha256').update(cert).update('\0').update(key).digest('hex');
}
