import type { ServerResponse } from 'node:http';

/** Called once when the client's exchange closes, with what it was registered with. */
export type EndListener<T> = (res: ServerResponse, arg: T) => void;

const kEnds = Symbol('fhir-binary-gateway.ends');

interface Ends {
  readonly fn: EndListener<never>;
  readonly arg: unknown;
  /** Listeners registered after the first, as fn, arg pairs. */
  more: unknown[] | undefined;
}

type WithEnds = ServerResponse & { [kEnds]?: Ends };

function onClose(this: WithEnds): void {
  const e = this[kEnds];
  if (!e) return;
  (e.fn as EndListener<unknown>)(this, e.arg);
  const more = e.more;
  if (more) for (let i = 0; i < more.length; i += 2) (more[i] as EndListener<unknown>)(this, more[i + 1]);
}

/**
 * Runs `fn(res, arg)` when the response closes (finished or cut short), after those registered
 * before it. Every part of the gateway that must hear the end of an exchange (the access line,
 * the audit trail, the forwarder letting go of the upstream) shares one 'close' listener: with
 * three, Node keeps them in an array it copies on every emit, and each `on` costs its own
 * registration on every proxied request.
 */
export function onExchangeEnd<T>(res: ServerResponse, fn: EndListener<T>, arg: T): void {
  const r = res as WithEnds;
  const e = r[kEnds];
  if (e === undefined) {
    r[kEnds] = { fn: fn, arg, more: undefined };
    res.on('close', onClose);
    return;
  }
  (e.more ??= []).push(fn, arg);
}
