import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths redacted wherever they appear. The gateway never logs headers or bodies on purpose;
 * this is the net under that rule (pino `redact`), tested by parsing log lines.
 */
export const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'headers.cookie',
  '*.headers.cookie',
  'token',
  '*.token',
  'access_token',
  '*.access_token',
  'signature',
  '*.signature',
  'body',
  '*.body',
];

const BASE = { service: 'fhir-binary-gateway' };

let isoSecond = -1;
let isoPrefix = '';
/**
 * pino's isoTime, the same ISO 8601 text, with the date formatted once a second rather than per
 * line: `new Date().toISOString()` was a tenth of an access line's cost.
 */
export function isoTime(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20); // 2026-12-06T18:40:12.
  }
  const ms = now - second * 1000;
  return `,"time":"${isoPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}
const FORMATTERS = { level: (label: string) => ({ level: label }) };
/** Buffered lines are written at least this often, so a quiet gateway's lines are not held back. */
const FLUSH_INTERVAL_MS = 1_000;
/** Lines are written in batches of about this many bytes (or on the interval above). */
const WRITE_BATCH_BYTES = 8 * 1024; // sonic-boom requires it below its maxWrite (16 KiB)

export function createLogger(level: string, destination?: DestinationStream): Logger {
  let dest = destination;
  if (!dest) {
    // Asynchronous, batched writes keep logging off the request's critical path (one write
    // syscall per line costs a busy gateway a tenth of its throughput); the interval bounds
    // how long a line can wait.
    const boom = pino.destination({ dest: 1, sync: false, minLength: WRITE_BATCH_BYTES });
    setInterval(() => boom.flush(), FLUSH_INTERVAL_MS).unref();
    dest = boom;
  }
  return pino(
    {
      level,
      base: BASE,
      timestamp: isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: FORMATTERS,
    },
    dest,
  );
}

/**
 * The logger for access lines, writing to the same destination. It has no redact step: its
 * lines have one fixed shape of values the gateway computes itself (ids, addresses, codes,
 * numbers), never headers, query strings or bodies, and pino's redaction of wildcard paths is
 * a measurable share of the per-request cost. test/http/logging.int.test.ts checks the lines.
 */
export function createAccessLogger(parent: Logger): Logger {
  return pino({ level: parent.level, base: BASE, timestamp: isoTime, formatters: FORMATTERS }, logStream(parent));
}

/**
 * The logger's destination itself, for lines of another shape that must share the gateway's
 * output without interleaving with its log lines (the audit trail's `stdout` destination: one
 * writer per file descriptor keeps each line whole).
 */
export function logStream(logger: Logger): DestinationStream & { once?(event: 'drain', listener: () => void): unknown } {
  return (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym];
}
