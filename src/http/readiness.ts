import type { Logger } from 'pino';

/** One dependency's answer. */
export interface CheckResult {
  readonly ok: boolean;
  readonly ms: number;
  /** Why not (never a secret: a status, a code, a reason). */
  readonly error?: string;
  /** Whether a failure of this check makes the gateway not ready (else it is reported as degraded). */
  readonly gating: boolean;
  /** How old the answer is: a passing answer stands for its check's `ttlMs`, a failing one for FAILED_TTL_MS. */
  readonly ageMs: number;
}

export interface ReadinessReport {
  readonly ready: boolean;
  /** Set once shutdown began: the gateway is finishing what it has and takes nothing new. */
  readonly draining?: boolean;
  /** A check that does not gate fails: ready, but part of what the gateway does fails (binary content, tokens). */
  readonly degraded?: boolean;
  readonly checks: Readonly<Record<string, CheckResult>>;
}

/** One dependency: how to check it, and how long a passing answer stands (a write probe is not made on every probe). */
export interface Check {
  /** Rejects with why the dependency cannot serve. */
  run(): Promise<void>;
  readonly ttlMs: number;
}

export type Checks = Readonly<Record<string, Check>>;

const CHECK_TIMEOUT_MS = 2_000;
/** A failing answer is asked again at most this often: recovery is seen within a probe period, a flood of probes costs nothing. */
const FAILED_TTL_MS = 1_000;

/**
 * Readiness that means ready: the upstream answers, the blob store takes a write, and the keys
 * tokens are verified with are there — each of the checks named in `gating` (by default all).
 * A check left out of `gating` is still run and reported: its failure makes the gateway
 * `degraded`, not unready (observability.readiness.gating: for a store or identity provider
 * shared by every replica, whose blip would otherwise take all of them out at once). Each failure
 * is named in the report and logged when a check changes state. Answers are reused for their
 * check's TTL, so a public /readyz probed in a loop makes no store writes or upstream calls
 * beyond that.
 */
export class Readiness {
  /** Probes from several places at once (kubelet, a load balancer, an operator) share the round under way. */
  private running: Promise<ReadinessReport> | undefined;
  private readonly failing = new Map<string, string>();
  private readonly answers = new Map<string, { readonly result: CheckResult; readonly at: number }>();
  private draining = false;

  constructor(
    private readonly checks: Checks,
    private readonly log: Logger,
    private readonly gating: readonly string[] = Object.keys(checks),
  ) {}

  /** From now on, not ready (shutdown). */
  drain(): void {
    this.draining = true;
  }

  report(): Promise<ReadinessReport> {
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  /** One named check alone (the upstream's, for its own liveness probe), asked now. */
  async one(name: string): Promise<CheckResult> {
    return this.timed(name);
  }

  private async run(): Promise<ReadinessReport> {
    const now = performance.now();
    const results = await Promise.all(
      Object.keys(this.checks).map(async (name): Promise<[string, CheckResult]> => {
        const kept = this.answers.get(name);
        const ttl = kept?.result.ok ? this.checks[name].ttlMs : FAILED_TTL_MS;
        if (kept && now - kept.at < ttl) return [name, { ...kept.result, ageMs: Math.round(now - kept.at) }];
        const result = await this.timed(name);
        this.answers.set(name, { result, at: performance.now() });
        this.note(name, result);
        return [name, result];
      }),
    );
    const checks = Object.fromEntries(results);
    const ready = !this.draining && results.every(([, r]) => r.ok || !r.gating);
    const degraded = results.some(([, r]) => !r.ok && !r.gating);
    return { ready, ...(this.draining ? { draining: true } : {}), ...(degraded ? { degraded } : {}), checks };
  }

  private async timed(name: string): Promise<CheckResult> {
    const started = performance.now();
    const gating = this.gating.includes(name);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.checks[name].run(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      return { ok: true, ms: Math.round(performance.now() - started), gating, ageMs: 0 };
    } catch (err) {
      return { ok: false, ms: Math.round(performance.now() - started), error: reasonOf(err), gating, ageMs: 0 };
    } finally {
      clearTimeout(timer);
    }
  }

  private note(name: string, r: CheckResult): void {
    const before = this.failing.get(name);
    if (!r.ok && before !== r.error) {
      this.failing.set(name, r.error!);
      this.log.warn(
        { check: name, cause: r.error, gating: r.gating },
        r.gating ? 'not ready: a dependency check fails' : 'degraded: a dependency check fails',
      );
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
