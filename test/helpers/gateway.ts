import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logging/logger.js';
import { startGateway, type RunningGateway } from '../../src/app/server.js';
import { AUDIENCE, ISSUER } from './auth.js';
import { eventually } from './poll.js';

/** Collects the gateway's log lines, parsed as JSON (pino's test habit: assert on real log output). */
export class LogSink extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    cb();
  }
}

export interface TestGateway extends RunningGateway {
  readonly logs: LogSink;
  /** The FHIR base clients call, e.g. http://127.0.0.1:PORT/fhir */
  readonly base: string;
  /** The filesystem blob store's directory (a fresh temp dir unless the config names one). */
  readonly blobDir: string;
  /** Every file under blobDir, temp files included: what a failed upload must not have added to. */
  blobFiles(): string[];
  /**
   * The directory the gateway spools bodies into (server.spoolDir): a fresh temp dir of this
   * gateway's own unless the config names one, so a leftover found there is this gateway's.
   */
  readonly spoolDir: string;
  /** The files in spoolDir: what an exchange must not leave behind once it is over. */
  spoolFiles(): string[];
  /**
   * The access line of request `reqId` (its X-Request-Id), once written: the line comes when the
   * exchange closes, which may be after the client has its answer. Its arrival is the gateway's
   * "done with this request", the positive event a check that something did NOT happen waits for.
   */
  accessLine(reqId: string | null | undefined, timeoutMs?: number): Promise<Record<string, unknown>>;
}

type Teardown = { teardown(fn: () => unknown): void };

/**
 * Starts the real gateway (same code path as the CLI) on an ephemeral port. `overrides` are
 * merged over a baseline config: upstream and JWKS given, HTTPS not required (tests speak
 * plain HTTP unless they test TLS), auth and SMART required.
 */
export async function startTestGateway(
  t: Teardown,
  opts: { upstream: string; jwksUri?: string; config?: Record<string, unknown> },
): Promise<TestGateway> {
  // A spool directory of its own: by default the gateway spools into the shared system temp dir,
  // where concurrent test files (and their leftovers) would meet.
  const namedSpool = (opts.config?.['server'] as Record<string, unknown> | undefined)?.['spoolDir'] !== undefined;
  const ownSpool = namedSpool ? undefined : mkdtempSync(join(tmpdir(), 'fbg-test-spool-'));
  const base: Record<string, unknown> = {
    server: { host: '127.0.0.1', port: 0, publicBaseUrl: 'http://gateway.test/fhir', ...(ownSpool ? { spoolDir: ownSpool } : {}) },
    upstream: { url: opts.upstream, connectTimeoutMs: 1000, timeoutMs: 5000 },
    auth: { issuers: [ISSUER], audiences: [AUDIENCE], ...(opts.jwksUri ? { jwksUri: opts.jwksUri } : {}), jwksCooldownMs: 0 },
    defaultRule: { require: { https: false, auth: true, smart: true } },
    storage: { filesystem: { directory: mkdtempSync(join(tmpdir(), 'fbg-test-blobs-')) } },
  };
  const merged = deepMerge(base, opts.config ?? {});
  const config = buildConfig(merged, '(test)', process.cwd());
  const logs = new LogSink();
  const log = createLogger('info', logs);
  const gw = await startGateway(config, log);
  const blobDir = config.storage.filesystem.directory;
  const spoolDir = config.server.spoolDir;
  t.teardown(async () => {
    await gw.close();
    rmSync(blobDir, { recursive: true, force: true });
    if (ownSpool) rmSync(ownSpool, { recursive: true, force: true });
  });
  const basePath = new URL(gw.publicBaseUrl).pathname.replace(/\/$/, '');
  const blobFiles = () => (readdirSync(blobDir, { recursive: true }) as string[]).filter((p) => statSync(join(blobDir, p)).isFile()).sort();
  const spoolFiles = () => readdirSync(spoolDir).sort();
  const accessLine = (reqId: string | null | undefined, timeoutMs = 5_000) => {
    if (!reqId) return Promise.reject(new Error('accessLine: the response carried no X-Request-Id'));
    return eventually(
      () => logs.lines.find((l) => l['msg'] === 'request' && l['reqId'] === reqId),
      `the access line of ${reqId}`,
      timeoutMs,
    );
  };
  return Object.assign(gw, { logs, base: `${gw.url}${basePath}`, blobDir, blobFiles, spoolDir, spoolFiles, accessLine });
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}
