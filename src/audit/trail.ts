import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/types.js';
import { ConfigError } from '../errors/catalogue.js';
import { FhirAuditPoster } from './fhir-poster.js';
import { LineQueue, type LineSink } from './line-queue.js';
import type { AuditRecord } from './record.js';

export interface AuditTrailDeps {
  readonly audit: GatewayConfig['audit'];
  readonly upstream: GatewayConfig['upstream'];
  /** The gateway's own output stream (the logger's destination), for `destination: stdout`. */
  readonly stdout: LineSink;
  readonly log: Logger;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** How often a count of dropped records is logged (when there were any). */
const DROP_REPORT_MS = 10_000;
/** How long shutdown waits for a slow destination or FHIR server. */
const CLOSE_MS = 5_000;

/**
 * The audit trail: every record goes to its own destination through a bounded queue, and to a FHIR
 * server as BALP AuditEvents when configured. Recording never blocks, never throws and never
 * fails a request; what cannot be kept is counted and the count logged at `warn`.
 */
export class AuditTrail {
  private readonly lines: LineQueue | undefined;
  private readonly file: WriteStream | undefined;
  private readonly fhir: FhirAuditPoster | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private reported = { lines: 0, fhir: 0 };

  constructor(private readonly deps: AuditTrailDeps) {
    const { audit } = deps;
    if (audit.destination === 'file') {
      // Opened now, so a path the gateway cannot write stops it at start, not at the first
      // request; owner-only, as the trail names patients and resources.
      let fd: number;
      try {
        fd = openSync(audit.file!, 'a', 0o600);
      } catch (err) {
        throw new ConfigError([
          `/audit/file: cannot be opened for appending (${(err as NodeJS.ErrnoException).code ?? 'error'}): ${audit.file!}`,
        ]);
      }
      this.file = createWriteStream('', { fd });
      const lines = new LineQueue(this.file, audit.queueRecords);
      this.lines = lines;
      let failed = false;
      this.file.on('error', (err) => {
        lines.fail();
        if (failed) return;
        failed = true;
        deps.log.error(
          { err: { code: (err as NodeJS.ErrnoException).code } },
          'audit file cannot be written: records are dropped from now on',
        );
      });
    } else if (audit.destination === 'stdout') this.lines = new LineQueue(deps.stdout, audit.queueRecords);
    if (audit.fhir.enabled) {
      const url = audit.fhir.url ?? deps.upstream.url;
      const token = audit.fhir.bearerTokenEnv ? deps.env[audit.fhir.bearerTokenEnv] : undefined;
      this.fhir = new FhirAuditPoster({
        url: url!,
        ...(token ? { bearerToken: token } : {}),
        batchSize: audit.fhir.batchSize,
        flushMs: audit.fhir.flushMs,
        queueRecords: audit.fhir.queueRecords,
        timeoutMs: deps.upstream.timeoutMs,
        rejectUnauthorized: deps.upstream.rejectUnauthorized,
        observer: 'fhir-binary-gateway',
        onFailure: (records, why) => deps.log.warn({ records, cause: why }, 'audit events could not be posted to the FHIR server: dropped'),
      });
    }
    if (this.lines || this.fhir) {
      this.timer = setInterval(() => this.reportDrops(), DROP_REPORT_MS);
      this.timer.unref();
    }
  }

  get enabled(): boolean {
    return this.lines !== undefined || this.fhir !== undefined;
  }

  record(r: AuditRecord): void {
    this.lines?.push(`${JSON.stringify(r)}\n`);
    this.fhir?.push(r);
  }

  stats(): { written: number; dropped: number; pending: number; posted: number; postDropped: number } {
    return {
      written: this.lines?.written ?? 0,
      dropped: this.lines?.dropped ?? 0,
      pending: this.lines?.pending ?? 0,
      posted: this.fhir?.posted ?? 0,
      postDropped: this.fhir?.dropped ?? 0,
    };
  }

  /** Logs drops since the last report (also called on close). */
  reportDrops(): void {
    const lines = this.lines?.dropped ?? 0;
    const fhir = this.fhir?.dropped ?? 0;
    if (lines > this.reported.lines)
      this.deps.log.warn(
        { dropped: lines - this.reported.lines, total: lines },
        'audit records dropped: the audit destination is not keeping up',
      );
    if (fhir > this.reported.fhir)
      this.deps.log.warn({ dropped: fhir - this.reported.fhir, total: fhir }, 'audit events dropped before reaching the FHIR server');
    this.reported = { lines, fhir };
  }

  /** Writes what waits (for at most a few seconds) and posts what is queued, then counts the rest. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([this.lines?.drained(CLOSE_MS), this.fhir?.flush(CLOSE_MS)]);
    this.reportDrops();
    if (this.file) await new Promise<void>((resolve) => this.file!.end(resolve));
  }
}
