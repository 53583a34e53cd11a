import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { GatewayError, isGatewayError } from '../errors.js';

/** The upstream could not be asked: carries what the client is told. */
export class UpstreamFailure extends Error {
  constructor(readonly gatewayError: GatewayError) {
    super(gatewayError.message, { cause: gatewayError.cause });
  }
}

/** Sends a request the gateway makes itself (the body a buffer or a stream) and resolves with the response head. */
export function sendUpstream(req: ClientRequest, body?: Buffer | Readable): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', (err: NodeJS.ErrnoException) => {
      const g = isGatewayError(err) ? err : new GatewayError('UPSTREAM_UNAVAILABLE', undefined, { cause: err });
      reject(new UpstreamFailure(g));
    });
    if (body === undefined || Buffer.isBuffer(body)) {
      req.end(body);
      return;
    }
    // A body that fails to read (its file vanished) must not leave the upstream waiting for the rest.
    body.once('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}

/** Reads a small JSON answer; refuses rather than buffers one larger than `maxBytes`. */
export async function readJson(res: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(res.headers['content-length'] ?? 0);
  if (declared > maxBytes) {
    res.destroy();
    throw new GatewayError('INTERNAL', `the upstream's resource is larger than ${maxBytes} bytes`);
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of res) {
    n += (chunk as Buffer).length;
    if (n > maxBytes) {
      res.destroy();
      throw new GatewayError('INTERNAL', `the upstream's resource is larger than ${maxBytes} bytes`);
    }
    parts.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(parts, n).toString('utf8'));
  } catch (err) {
    throw new GatewayError('UPSTREAM_UNAVAILABLE', 'the upstream answered with malformed JSON', { cause: err });
  }
}
