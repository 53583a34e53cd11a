import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { AuditRecord } from '../audit/record.js';
import type { GatewayConfig } from '../config/types.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { PendingLookup } from './pending-lookup.js';
import type { Metrics } from '../telemetry/metrics.js';
import { sweep, type SweepReport } from './sweeper.js';

/**
 * `retention.schedule: true`: the gateway sweeps by itself, once per period, a little after the
 * period starts (spread by a random delay, so replicas do not all try the claim in the same
 * millisecond — only one of them sweeps anyway). A failed sweep is logged and the next period
 * tries again; a sweep never overlaps another in this process. The configuration in force at each
 * tick applies (a reload may turn it off or change the period).
 */
export class SweepSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly deps: {
      readonly store: BlobStore;
      readonly upstream: PendingLookup;
      readonly config: () => GatewayConfig;
      readonly log: Logger;
      /** Where the sweep's changes are audited. */
      readonly audit?: (record: AuditRecord) => void;
      /** For tests: when the next sweep runs after `now`. */
      readonly delayMs?: (periodMs: number, now: number) => number;
      /** For tests: the sweep's clock (a sweep stops in its period's last seconds). */
      readonly now?: () => Date;
      readonly metrics?: Pick<Metrics, 'sweep'>;
    },
  ) {}

  start(): void {
    this.arm();
  }

  /** Stops the schedule, and a sweep under way at its next blob; resolves once it has stopped. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abort.abort();
    await this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    const period = this.deps.config().retention.sweepPeriodMinutes * 60_000;
    const now = Date.now();
    const delay = this.deps.delayMs?.(period, now) ?? period - (now % period) + Math.floor(Math.random() * Math.min(60_000, period / 10));
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const config = this.deps.config();
    if (config.retention.schedule && !this.stopped) {
      this.running = this.once(config);
      await this.running;
      this.running = undefined;
    }
    this.arm();
  }

  private async once(config: GatewayConfig): Promise<void> {
    try {
      const report = await sweep({
        store: this.deps.store,
        upstream: this.deps.upstream,
        spoolDir: config.server.spoolDir,
        retention: config.retention,
        dryRun: false,
        holder: `${hostname()}:${process.pid}`,
        signal: this.abort.signal,
        ...(this.deps.audit ? { audit: this.deps.audit } : {}),
        ...(this.deps.now ? { now: this.deps.now } : {}),
      });
      this.deps.metrics?.sweep(report.claimed ? 'done' : 'skipped', {
        deleted: report.deleted.length,
        unlinked: report.unlinked.length,
        linked: report.linked.length,
        kept: report.kept.length,
        leftovers: report.leftovers.length,
      });
      this.deps.log.info(
        { sweep: summary(report) },
        report.claimed ? 'retention sweep done' : 'retention sweep: another replica holds this period',
      );
    } catch (err) {
      this.deps.metrics?.sweep('failed');
      this.deps.log.error({ err }, 'retention sweep failed; the next period tries again');
    }
  }
}

/** Counts, for the log: the ids are in `fhir-binary-gateway sweep --dry-run`'s report. */
export function summary(r: SweepReport): Record<string, unknown> {
  return {
    claim: r.claim,
    claimed: r.claimed,
    leftovers: r.leftovers.length,
    spool: r.spool.length,
    staleClaims: r.staleClaims.length,
    linked: r.linked.length,
    unlinked: r.unlinked.length,
    checked: r.checked,
    deleted: r.deleted.length,
    kept: r.kept.length,
    stoppedEarly: r.stoppedEarly,
    resumed: r.resumedAt !== null,
  };
}
