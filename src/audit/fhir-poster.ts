import http from 'node:http';
import https from 'node:https';
import { auditEvent } from './balp.js';
import type { AuditRecord } from './record.js';

export interface FhirPosterOptions {
  /** The FHIR base the batch Bundles are posted to. */
  readonly url: string;
  readonly bearerToken?: string;
  readonly batchSize: number;
  readonly flushMs: number;
  readonly queueRecords: number;
  readonly timeoutMs: number;
  readonly rejectUnauthorized: boolean;
  /** AuditEvent.source.observer. */
  readonly observer: string;
  /** A batch that could not be posted (its records are counted as dropped). */
  onFailure(records: number, why: string): void;
}

/**
 * Posts audit records to a FHIR server as BALP AuditEvents, `batchSize` to a batch Bundle, at most
 * one Bundle in flight and at least every `flushMs`. A request only ever enqueues; a full queue
 * drops (counted), and a batch the server refuses or does not take in time is dropped whole
 * (counted, logged) — the local audit destination has every record anyway.
 */
export class FhirAuditPoster {
  private readonly queue: AuditRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private closing = false;
  posted = 0;
  dropped = 0;

  constructor(private readonly opts: FhirPosterOptions) {}

  push(r: AuditRecord): void {
    if (this.closing || this.queue.length >= this.opts.queueRecords) {
      this.dropped++;
      return;
    }
    this.queue.push(r);
    if (this.queue.length >= this.opts.batchSize) this.flushSoon(0);
    else this.flushSoon(this.opts.flushMs);
  }

  /**
   * On shutdown: posts what is queued, one Bundle at a time, until `ms` have passed or a post
   * fails; what is left is counted as dropped. Nothing is posted after it resolves.
   */
  async flush(ms: number): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const deadline = Date.now() + ms;
    await this.inFlight;
    while (this.queue.length > 0 && Date.now() < deadline) {
      const before = this.dropped;
      await this.postBatch();
      if (this.dropped > before) break;
    }
    this.dropped += this.queue.splice(0).length;
  }

  private flushSoon(ms: number): void {
    if (this.inFlight || this.closing) return;
    if (this.timer && ms > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.inFlight = this.postBatch().finally(() => {
        this.inFlight = undefined;
        if (this.queue.length > 0) this.flushSoon(this.queue.length >= this.opts.batchSize ? 0 : this.opts.flushMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async postBatch(): Promise<void> {
    const batch = this.queue.splice(0, this.opts.batchSize);
    if (batch.length === 0) return;
    const bundle = {
      resourceType: 'Bundle',
      type: 'batch',
      entry: batch.map((r) => ({ resource: auditEvent(r, this.opts.observer), request: { method: 'POST', url: 'AuditEvent' } })),
    };
    try {
      const { status, body } = await this.post(JSON.stringify(bundle));
      if (status < 200 || status >= 300) throw new Error(`the FHIR server answered ${status}`);
      // A batch succeeds as a whole even when its entries fail: each entry's own status says.
      const refused = refusedEntries(body, batch.length);
      this.posted += batch.length - refused;
      if (refused > 0) {
        this.dropped += refused;
        this.opts.onFailure(refused, `the FHIR server refused ${refused} of ${batch.length} AuditEvents in its batch-response`);
      }
    } catch (err) {
      this.dropped += batch.length;
      this.opts.onFailure(batch.length, (err as Error).message.slice(0, 200));
    }
  }

  private post(body: string): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const target = new URL(this.opts.url.replace(/\/+$/, '') || this.opts.url);
      const secure = target.protocol === 'https:';
      const req = (secure ? https : http).request(target, {
        method: 'POST',
        headers: {
          'content-type': 'application/fhir+json',
          accept: 'application/fhir+json',
          prefer: 'return=minimal',
          'content-length': Buffer.byteLength(body),
          ...(this.opts.bearerToken ? { authorization: `Bearer ${this.opts.bearerToken}` } : {}),
        },
        ...(secure ? { rejectUnauthorized: this.opts.rejectUnauthorized } : {}),
      });
      req.setTimeout(this.opts.timeoutMs, () => req.destroy(new Error('the FHIR server did not answer in time')));
      req.once('response', (res) => {
        const parts: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n <= MAX_ANSWER_BYTES) parts.push(c);
        });
        res.once('end', () =>
          resolve({ status: res.statusCode ?? 0, body: n <= MAX_ANSWER_BYTES ? Buffer.concat(parts) : Buffer.alloc(0) }),
        );
        res.once('error', reject);
      });
      req.once('error', reject);
      req.end(body);
    });
  }
}

/** A batch-response larger than this is not read (it cannot be judged): the server is asked for minimal entries. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * How many of `sent` entries a batch-response says were not stored: an entry whose status is not
 * 2xx, or the whole batch when the answer is not a batch-response of that many entries (whether
 * they were stored cannot be told: counted as lost rather than believed).
 */
export function refusedEntries(body: Buffer, sent: number): number {
  let answer: { resourceType?: unknown; type?: unknown; entry?: unknown };
  try {
    answer = JSON.parse(body.toString('utf8')) as typeof answer;
  } catch {
    return sent;
  }
  if (answer?.resourceType !== 'Bundle' || answer.type !== 'batch-response' || !Array.isArray(answer.entry) || answer.entry.length !== sent)
    return sent;
  return (answer.entry as { response?: { status?: unknown } }[]).filter((e) => !/^2\d\d\b/.test(String(e?.response?.status ?? ''))).length;
}
