import type { FetchImplementation } from 'jose';

/**
 * What a client is told to wait after the identity provider's keys could not be fetched. A few
 * seconds: long enough that clients retrying at once do not add to the load of an identity
 * provider that is struggling, short enough that a blip (a restart, a lost connection) costs a
 * user little. It is also the longest the gateway itself waits before asking again (see below).
 */
export const KEYS_RETRY_AFTER_SECONDS = 5;

/** Where a failed fetch is reported: a pino logger, or a test's collector. */
export interface KeysLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** The JWKS could not be fetched: an outage of the identity provider, not a bad token. */
export class KeysUnavailable extends Error {
  constructor(readonly reason: string) {
    super(`the JWKS could not be fetched: ${reason}`);
    this.name = 'KeysUnavailable';
  }
}

/**
 * The fetch jose's remote JWKS uses (jose's `customFetch`): every way of not getting a key set —
 * refused or reset connection, timeout, a status other than 200, a body that is not a JWK Set —
 * becomes one {@link KeysUnavailable}, so the verifier can tell an outage (503) from a token
 * whose key is not in a set it did get (401). Each failure is logged once, at warn, with its
 * cause and never anything of a token (none is at hand here).
 *
 * After a failure, requests that need the keys fail at once for a while instead of each asking
 * again: an identity provider that is down is not hammered by every request the gateway
 * receives. The pause is `jwksCooldownMs` (the operator's bound on how often the gateway may ask),
 * at most {@link KEYS_RETRY_AFTER_SECONDS}.
 */
export function keySetFetch(
  source: { readonly uri: string; readonly cooldownMs: number; readonly timeoutMs: number },
  log: KeysLog | undefined,
  now: () => number = Date.now,
  counted: (ok: boolean) => void = () => undefined,
): FetchImplementation {
  const pauseMs = Math.min(source.cooldownMs, KEYS_RETRY_AFTER_SECONDS * 1000);
  let pausedUntil = 0;
  let lastReason = '';
  return async (url, init) => {
    if (now() < pausedUntil) throw new KeysUnavailable(lastReason);
    try {
      const res = await fetchKeySet(url, init);
      counted(true);
      return res;
    } catch (err) {
      counted(false);
      lastReason = reasonOf(err, source.timeoutMs);
      pausedUntil = now() + pauseMs;
      log?.warn({ jwksUri: source.uri, cause: lastReason }, 'the identity provider signing keys (JWKS) could not be fetched');
      throw new KeysUnavailable(lastReason);
    }
  };
}

async function fetchKeySet(url: string, init: Parameters<FetchImplementation>[1]): Promise<Response> {
  const res = await fetch(url, init);
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status}`);
  }
  const text = await res.text();
  let set: unknown;
  try {
    set = JSON.parse(text);
  } catch {
    throw new Error('the answer is not JSON');
  }
  // jose's own test (isJwkSet): an object whose `keys` is an array of objects.
  const keys = (set as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || !keys.every((k) => k !== null && typeof k === 'object' && !Array.isArray(k))) {
    throw new Error('the answer is not a JWK Set');
  }
  return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
}

/** A short cause for the log: a system error code, the timeout, or our own description. */
function reasonOf(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: unknown } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  if (typeof e.cause?.code === 'string') return e.cause.code;
  return e.message ?? String(err);
}
