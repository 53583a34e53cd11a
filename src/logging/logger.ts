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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'fhir-binary-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    // Asynchronous writes keep logging off the request's critical path (lines written while a
    // write is in flight are batched). No minLength: a buffer that waits for 4 KiB would hold a
    // quiet gateway's lines (the startup line, a failed reload) back indefinitely.
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
