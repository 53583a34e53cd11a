import type { Logger } from 'pino';

/** One dependency's answer. */
export interface CheckResult {
  readonly ok: boolean;
  readonly ms: number;
  /** Why not (never a secret: a status, a code, a reason). */
  readonly error?: string;
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Set once shutdown began: the gateway is finishing what it has and takes nothing new. */
  readonly draining?: boolean;
  readonly checks: Readonly<Record<string, CheckResult>>;
}

/** Each check rejects with why its dependency cannot serve. */
export type Checks = Readonly<Record<string, () => Promise<void>>>;

const CHECK_TIMEOUT_MS = 2_000;

/**
 * Readiness that means ready: the upstream answers, the blob store takes a write, and the keys
 * tokens are verified with are there. Each failure is named in the report and logged when a
 * check changes state (not on every probe).
 */
export class Readiness {
  /** Probes from several places at once (kubelet, a load balancer, an operator) share the round under way. */
  private running: Promise<ReadinessReport> | undefined;
  private readonly failing = new Map<string, string>();
  private draining = false;

  constructor(
    private readonly checks: Checks,
    private readonly log: Logger,
  ) {}

  /** From now on, not ready (shutdown). */
  drain(): void {
    this.draining = true;
  }

  report(): Promise<ReadinessReport> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  /** One named check alone (the upstream's, for its own liveness probe). */
  async one(name: string): Promise<CheckResult> {
    return (await this.timed(name))[1];
  }

  private async run(): Promise<ReadinessReport> {
    const results = await Promise.all(Object.keys(this.checks).map((name) => this.timed(name)));
    for (const [name, r] of results) this.note(name, r);
    const checks = Object.fromEntries(results);
    const ready = !this.draining && results.every(([, r]) => r.ok);
    return { ready, ...(this.draining ? { draining: true } : {}), checks };
  }

  private async timed(name: string): Promise<[string, CheckResult]> {
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.checks[name](),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      return [name, { ok: true, ms: Math.round(performance.now() - started) }];
    } catch (err) {
      return [name, { ok: false, ms: Math.round(performance.now() - started), error: reasonOf(err) }];
    } finally {
      clearTimeout(timer);
    }
  }

  private note(name: string, r: CheckResult): void {
    const before = this.failing.get(name);
    if (!r.ok && before !== r.error) {
      this.failing.set(name, r.error!);
      this.log.warn({ check: name, cause: r.error }, 'not ready: a dependency check fails');
    } else if (r.ok && before !== undefined) {
      this.failing.delete(name);
      this.log.info({ check: name }, 'a dependency check passes again');
    }
  }
}

function reasonOf(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const cause = typeof e?.cause?.message === 'string' ? `: ${e.cause.message}` : '';
  return `${code ? `${code} ` : ''}${message}${cause}`.slice(0, 300);
}
