/**
 * Waits until `check` returns a value that is not undefined (or `true`), polling every
 * `intervalMs`, and fails after `timeoutMs`: what a test waits for is a condition, never a
 * fixed sleep (too short on a loaded machine, needlessly long on an idle one).
 */
export async function eventually<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 5_000,
  intervalMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until `read()` equals `expected` (compared as JSON), then returns it; on timeout returns the last value read, for the assertion to show. */
export async function settled<T>(read: () => T, expected: T, timeoutMs = 5_000, intervalMs = 10): Promise<T> {
  const want = JSON.stringify(expected);
  const deadline = Date.now() + timeoutMs;
  let last = read();
  while (JSON.stringify(last) !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, intervalMs));
    last = read();
  }
  return last;
}
