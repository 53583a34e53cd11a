// The log lines' `time`: the same ISO 8601 text as pino's isoTime (new Date().toISOString()),
// with the date part made once a second.
import t from 'tap';
import { isoTime } from '../../src/logging/logger.js';

t.test('isoTime writes what toISOString writes, across milliseconds and seconds', async (t) => {
  const real = Date.now;
  t.teardown(() => {
    Date.now = real;
  });
  const base = Date.UTC(2026, 11, 6, 23, 59, 59, 0);
  for (const at of [base, base + 7, base + 42, base + 999, base + 1000, base + 1001, base + 86_400_000 + 123, Date.UTC(2027, 0, 1)]) {
    Date.now = () => at;
    t.equal(isoTime(), `,"time":"${new Date(at).toISOString()}"`, new Date(at).toISOString());
  }
  Date.now = () => base + 5; // back within an earlier second: the date is made again
  t.equal(isoTime(), `,"time":"${new Date(base + 5).toISOString()}"`);
});
