import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How an exchange ended, as the audit trail says it. */
/** `rejected`: the upstream answered 4xx; `failed`: a 5xx; `refused`: the gateway said no (its catalogue code). */
export type ExchangeOutcome = 'success' | 'refused' | 'rejected' | 'failed' | 'aborted';

/** One client exchange, at its end. */
export interface ExchangeFigures {
  readonly interaction: string;
  readonly outcome: ExchangeOutcome;
  readonly status: number;
  /** The catalogue code of a refusal or failure. */
  readonly code: string | undefined;
  readonly seconds: number;
  /** Bytes on the client connection during the exchange, headers included. */
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** Stored content moved: `stored` written to the store, `served` sent raw, `inflated` sent inside FHIR JSON, `inline` data the FHIR server held itself, sent in an answer. */
export type ContentKind = 'stored' | 'served' | 'inflated' | 'inline';

/**
 * What the gateway counts. The parts that count call these; the Prometheus registry behind them
 * is the observability listener's (`/metrics`). Without that listener nothing is counted
 * (NO_METRICS): the request path pays nothing for figures nobody reads.
 */
export interface Metrics {
  readonly enabled: boolean;
  exchangeStarted(): void;
  exchangeEnded(e: ExchangeFigures): void;
  /** Time to the upstream's response head (or its failure). */
  upstream(interaction: string, seconds: number, status: number | 'error'): void;
  content(kind: ContentKind, bytes: number): void;
  store(op: string, seconds: number, failed: boolean): void;
  jwksFetch(ok: boolean): void;
  tokenCache(hit: boolean): void;
  /** One scheduled sweep's result and counts. */
  sweep(result: 'done' | 'skipped' | 'failed', counts?: Readonly<Record<string, number>>): void;
  /** A figure read when scraped (queue lengths, totals kept elsewhere). */
  observe(name: string, help: string, kind: 'gauge' | 'counter', read: () => number): void;
}

const noop = (): void => undefined;

export const NO_METRICS: Metrics = {
  enabled: false,
  exchangeStarted: noop,
  exchangeEnded: noop,
  upstream: noop,
  content: noop,
  store: noop,
  jwksFetch: noop,
  tokenCache: noop,
  sweep: noop,
  observe: noop,
};

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Status as a class (`2xx`): per-status labels would multiply series for nothing. */
const statusClass = (status: number): string => `${Math.floor(status / 100)}xx`;

export class PromMetrics implements Metrics {
  readonly enabled = true;
  readonly registry = new Registry();
  private readonly requests: Counter<'interaction' | 'outcome' | 'status' | 'code'>;
  private readonly duration: Histogram<'interaction'>;
  private readonly inFlight: Gauge;
  private readonly bytes: Counter<'direction'>;
  private readonly upstreamLatency: Histogram<'interaction' | 'status'>;
  private readonly contentBytes: Counter<'kind'>;
  private readonly storeLatency: Histogram<'op'>;
  private readonly storeErrors: Counter<'op'>;
  private readonly jwks: Counter<'outcome'>;
  private readonly tokens: Counter<'result'>;
  private readonly sweeps: Counter<'result'>;
  private readonly sweptBlobs: Counter<'action'>;

  constructor(version: string) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'fbg_' });
    new Gauge({ name: 'fbg_build_info', help: 'The gateway build', labelNames: ['version', 'node'], registers }).set(
      { version, node: process.versions.node },
      1,
    );
    this.requests = new Counter({
      name: 'fbg_requests_total',
      help: 'Client exchanges by interaction, outcome (success, refused, failed, aborted), status class and catalogue code',
      labelNames: ['interaction', 'outcome', 'status', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'fbg_request_duration_seconds',
      help: 'Client exchanges, from the request head to the end of the answer',
      labelNames: ['interaction'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inFlight = new Gauge({ name: 'fbg_inflight_exchanges', help: 'Client exchanges under way', registers });
    this.bytes = new Counter({
      name: 'fbg_client_bytes_total',
      help: 'Bytes on client connections (headers included), in and out',
      labelNames: ['direction'],
      registers,
    });
    this.upstreamLatency = new Histogram({
      name: 'fbg_upstream_duration_seconds',
      help: "Time to the upstream FHIR server's response head, by interaction and status class (or error)",
      labelNames: ['interaction', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.contentBytes = new Counter({
      name: 'fbg_content_bytes_total',
      help: 'Attachment content moved: stored (externalized), served (raw), inflated (into FHIR JSON), inline (held by the FHIR server, sent on)',
      labelNames: ['kind'],
      registers,
    });
    this.storeLatency = new Histogram({
      name: 'fbg_store_operation_duration_seconds',
      help: 'Blob store operations (for reads: until the content starts)',
      labelNames: ['op'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.storeErrors = new Counter({
      name: 'fbg_store_errors_total',
      help: 'Blob store operations that failed',
      labelNames: ['op'],
      registers,
    });
    this.jwks = new Counter({ name: 'fbg_jwks_fetches_total', help: 'Fetches of the signing key set', labelNames: ['outcome'], registers });
    this.tokens = new Counter({
      name: 'fbg_token_cache_total',
      help: 'Token verifications answered from the cache (hit) or verified (miss)',
      labelNames: ['result'],
      registers,
    });
    this.sweeps = new Counter({
      name: 'fbg_sweeps_total',
      help: 'Scheduled retention sweeps: done, skipped (another replica held the period), failed',
      labelNames: ['result'],
      registers,
    });
    this.sweptBlobs = new Counter({
      name: 'fbg_sweep_blobs_total',
      help: 'Blobs the scheduled sweeps acted on or kept, by action',
      labelNames: ['action'],
      registers,
    });
  }

  exchangeStarted(): void {
    this.inFlight.inc();
  }

  exchangeEnded(e: ExchangeFigures): void {
    this.inFlight.dec();
    this.requests.inc({ interaction: e.interaction, outcome: e.outcome, status: statusClass(e.status), code: e.code ?? '' });
    this.duration.observe({ interaction: e.interaction }, e.seconds);
    if (e.bytesIn > 0) this.bytes.inc({ direction: 'in' }, e.bytesIn);
    if (e.bytesOut > 0) this.bytes.inc({ direction: 'out' }, e.bytesOut);
  }

  upstream(interaction: string, seconds: number, status: number | 'error'): void {
    this.upstreamLatency.observe({ interaction, status: status === 'error' ? 'error' : statusClass(status) }, seconds);
  }

  content(kind: ContentKind, bytes: number): void {
    this.contentBytes.inc({ kind }, bytes);
  }

  store(op: string, seconds: number, failed: boolean): void {
    this.storeLatency.observe({ op }, seconds);
    if (failed) this.storeErrors.inc({ op });
  }

  jwksFetch(ok: boolean): void {
    this.jwks.inc({ outcome: ok ? 'ok' : 'failed' });
  }

  tokenCache(hit: boolean): void {
    this.tokens.inc({ result: hit ? 'hit' : 'miss' });
  }

  sweep(result: 'done' | 'skipped' | 'failed', counts: Readonly<Record<string, number>> = {}): void {
    this.sweeps.inc({ result });
    for (const [action, n] of Object.entries(counts)) if (n > 0) this.sweptBlobs.inc({ action }, n);
  }

  observe(name: string, help: string, kind: 'gauge' | 'counter', read: () => number): void {
    const registers = [this.registry];
    if (kind === 'gauge')
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    else
      new Counter({
        name,
        help,
        registers,
        collect() {
          // A total kept elsewhere: the counter shows it as it is now.
          this.reset();
          this.inc(read());
        },
      });
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ readonly body: string; readonly contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
