import pino, { type DestinationStream, type Logger } from 'pino';
import { BatchDestination } from './batch-destination.js';

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
const SERVICE = `,"service":${JSON.stringify(BASE.service)}`;
/** Every access line's message, and the line's end. */
const ACCESS_MSG = ',"msg":"request"}\n';

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
/**
 * Standard output, written in batches: one write syscall per line cost a busy gateway a tenth of
 * its throughput. A line waits at most a second; a blocked output holds at most 8 Mi characters
 * (then lines are dropped and counted, and the count is logged when the output moves again).
 */
export function stdoutDestination(): BatchDestination {
  const dest = new BatchDestination({
    fd: 1,
    batchChars: 64 * 1024,
    highWaterChars: 1024 * 1024,
    maxChars: 8 * 1024 * 1024,
    intervalMs: 1_000,
  });
  // No event loop is left at 'exit' to finish an asynchronous write: what waits goes out now.
  process.once('exit', () => dest.flushSync());
  return dest;
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const dest = destination ?? stdoutDestination();
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
 * Writes the access lines: the same JSON shape as the logger's lines (level, time, service, the
 * fields, msg), to the same destination, put together directly rather than by pino. Its lines have one fixed shape of values the gateway computes itself (ids, addresses,
 * codes, numbers), never headers, query strings or bodies, so pino's redaction has nothing to
 * do; and pino's general serialization (and then one `JSON.stringify` of an object
 * built per line) measured several times the cost of this in a busy gateway. test/http/logging.int.test.ts checks the lines.
 */
export class AccessLineWriter {
  private enabled: boolean;
  private readonly out: DestinationStream;

  constructor(parent: Logger) {
    this.out = logStream(parent);
    this.enabled = parent.isLevelEnabled('info');
  }

  set level(level: string) {
    this.enabled = (pino.levels.values[level] ?? Infinity) <= pino.levels.values['info'];
  }

  get on(): boolean {
    return this.enabled;
  }

  /**
   * One access line: `fields` is the JSON text of its own fields, each led by a comma
   * (`,"status":200,"ms":1.2`), put between the line's level, time and service and its message.
   */
  write(fields: string): void {
    this.out.write(`{"level":"info"${isoTime()}${SERVICE}${fields}${ACCESS_MSG}`);
  }
}

/**
 * The logger's destination itself, for lines of another shape that must share the gateway's
 * output without interleaving with its log lines (the audit trail's `stdout` destination: one
 * writer per file descriptor keeps each line whole).
 */
export function logStream(logger: Logger): DestinationStream & { once?(event: 'drain', listener: () => void): unknown } {
  return (logger as unknown as Record<symbol, DestinationStream>)[pino.symbols.streamSym];
}
