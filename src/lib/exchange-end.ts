import type { IncomingMessage, ServerResponse } from 'node:http';

/** Called once when the client's exchange closes, with what it was registered with. */
export type EndListener<T> = (res: ServerResponse, arg: T) => void;

const kEnds = Symbol('fhir-binary-gateway.ends');

interface Ends {
  readonly fn: EndListener<never>;
  readonly arg: unknown;
  /** Listeners registered after the first, as fn, arg pairs. */
  more: unknown[] | undefined;
  fired: boolean;
}

type WithEnds = ServerResponse & { [kEnds]?: Ends };
type Queued = IncomingMessage & { [kEnds]?: WithEnds };

function fire(res: ServerResponse, e: Ends): void {
  if (e.fired) return;
  e.fired = true;
  (e.fn as EndListener<unknown>)(res, e.arg);
  const more = e.more;
  if (more) for (let i = 0; i < more.length; i += 2) (more[i] as EndListener<unknown>)(res, more[i + 1]);
}

function onClose(this: WithEnds): void {
  const e = this[kEnds];
  if (e) fire(this, e);
}

/**
 * A pipelined request's response waits for the ones before it and has no socket yet; when the
 * client goes away then, Node destroys the request but never closes that response. Its request's
 * 'close' (which otherwise comes after the response's) ends the exchange instead.
 */
function onQueuedRequestClose(this: Queued): void {
  const res = this[kEnds];
  const e = res?.[kEnds];
  if (res && e) fire(res, e);
}

/**
 * Runs `fn(res, arg)` once when the exchange ends — the response closes (finished or cut short),
 * or, for a pipelined request still waiting its turn, the client goes away — after those
 * registered before it. Every part of the gateway that must hear the end of an exchange (the
 * access line, the audit trail, the forwarder letting go of the upstream) shares one 'close'
 * listener: with three, Node keeps them in an array it copies on every emit, and each `on` costs
 * its own registration on every proxied request.
 */
export function onExchangeEnd<T>(res: ServerResponse, fn: EndListener<T>, arg: T): void {
  const r = res as WithEnds;
  const e = r[kEnds];
  if (e === undefined) {
    r[kEnds] = { fn: fn, arg, more: undefined, fired: false };
    res.on('close', onClose);
    if (res.socket === null) {
      const req = res.req as Queued;
      req[kEnds] = res;
      req.on('close', onQueuedRequestClose);
    }
    return;
  }
  // Registered after the end (a check that finished after the client left): heard at once.
  if (e.fired) fn(res, arg);
  else (e.more ??= []).push(fn, arg);
}

/** Whether the exchange has ended (see onExchangeEnd): nothing more is done on its behalf. */
export function exchangeEnded(res: ServerResponse): boolean {
  return res.destroyed || (res as WithEnds)[kEnds]?.fired === true;
}
