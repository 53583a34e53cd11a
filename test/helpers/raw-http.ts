/**
 * HTTP/1.1 by hand, for tests that must control the exact bytes on the wire: fetch/undici
 * normalises paths (dot segments, backslashes), merges repeated headers and refuses some
 * framings, which is exactly what the gateway must be tested against.
 *
 * Also a plain node:http "recording" server for tests that need an upstream whose behaviour
 * they control (slow, streaming, counting connections) and which records a request the moment
 * its head arrives, before any body.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';

type Teardown = { teardown(fn: () => unknown): void };

export interface RawResponse {
  readonly statusCode: number;
  readonly statusMessage: string;
  /** Header fields in wire order, names as sent. */
  readonly rawHeaders: readonly (readonly [string, string])[];
  /** Lower-cased names; repeated fields joined with ', '. */
  readonly headers: Readonly<Record<string, string>>;
  /** The de-chunked body (empty for 1xx, 204, 304 and responses to HEAD). */
  readonly body: Buffer;
  /** The body was framed by Transfer-Encoding: chunked. */
  readonly chunked: boolean;
  /** The body was complete according to its framing (false: the connection was cut first). */
  readonly complete: boolean;
}

export class RawHttpError extends Error {}

/**
 * One client connection speaking raw HTTP/1.1. Responses are parsed from the byte stream in
 * order, 1xx interim responses included (each is returned by its own readResponse call).
 */
export class RawConnection {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  private error: Error | undefined;
  private waiters: (() => void)[] = [];
  /** Every byte the server sent, for assertions such as "no 100 Continue was ever sent". */
  received: Buffer = Buffer.alloc(0);

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.received = Buffer.concat([this.received, d]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
      this.ended = true;
      this.wake();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host }, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  /** True once the server closed (or reset) the connection. */
  get closed(): boolean {
    return this.ended;
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Resolves when the server has closed the connection; false if it had not after `timeoutMs`. */
  async waitClosed(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.waitForData(left).catch(() => undefined);
    }
    return true;
  }

  /** Waits until the connection carries `n` bytes beyond what it has parsed (or closes). */
  async waitForBytes(n: number, timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.waitForData(left).catch(() => undefined);
    }
    return this.buf.length >= n;
  }

  /**
   * Reads the next response. `head: true` for a response to HEAD (no body whatever the headers
   * say). A response whose body is cut by the connection closing comes back with complete: false.
   */
  async readResponse(opts: { timeoutMs?: number; head?: boolean } = {}): Promise<RawResponse> {
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    for (;;) {
      const parsed = tryParse(this.buf, this.ended, opts.head ?? false);
      if (parsed) {
        this.buf = this.buf.subarray(parsed.consumed);
        return parsed.response;
      }
      if (this.ended) {
        throw new RawHttpError(
          `connection closed before a complete response head (${this.error?.message ?? 'closed'}); got ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`,
        );
      }
      const left = deadline - Date.now();
      if (left > 0) await this.waitForData(left).catch(() => undefined);
      else
        throw new RawHttpError(`no complete response within the timeout; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private waitForData(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((f) => f !== done);
        reject(new RawHttpError('timeout'));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push(done);
    });
  }
}

/** Sends `bytes` on a fresh connection and reads one final response (skipping 1xx). */
export async function rawRequest(
  port: number,
  bytes: string | Buffer,
  opts: { timeoutMs?: number; head?: boolean } = {},
): Promise<RawResponse & { interim: RawResponse[] }> {
  const conn = await RawConnection.connect(port);
  try {
    await conn.write(bytes).catch(() => undefined); // the server may cut us off mid-write: read what it said
    const interim: RawResponse[] = [];
    for (;;) {
      const r = await conn.readResponse(opts);
      if (r.statusCode >= 200) return Object.assign(r, { interim });
      interim.push(r);
    }
  } finally {
    conn.close();
  }
}

/** Builds a request: `lines` are the request line and header lines, without CRLFs. */
export function httpMessage(lines: readonly string[], body: string | Buffer = ''): Buffer {
  return Buffer.concat([
    Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'),
    typeof body === 'string' ? Buffer.from(body, 'latin1') : body,
  ]);
}

/** One chunk of a chunked body, or the terminating zero chunk for an empty input. */
export function chunk(data: string | Buffer): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  return b.length === 0 ? Buffer.from('0\r\n\r\n') : Buffer.concat([Buffer.from(b.length.toString(16) + '\r\n'), b, Buffer.from('\r\n')]);
}

export function portOf(url: string): number {
  return Number(new URL(url).port);
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

function tryParse(buf: Buffer, ended: boolean, head: boolean): { response: RawResponse; consumed: number } | undefined {
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0) return undefined;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) throw new RawHttpError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0])}`);
  const statusCode = Number(m[1]);
  const rawHeaders: [string, string][] = [];
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new RawHttpError(`bad header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const l = name.toLowerCase();
    headers[l] = l in headers ? `${headers[l]}, ${value}` : value;
  }
  const base = { statusCode, statusMessage: m[2] ?? '', rawHeaders, headers };
  let pos = end + 4;
  if (statusCode < 200 || statusCode === 204 || statusCode === 304 || head) {
    return { response: { ...base, body: Buffer.alloc(0), chunked: false, complete: true }, consumed: pos };
  }
  if (/(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd < 0) return ended ? cut(base, parts, true, buf.length) : undefined;
      const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1').split(';')[0].trim(), 16);
      if (Number.isNaN(size)) throw new RawHttpError('bad chunk size line');
      if (size === 0) {
        // Trailer section: lines until an empty one.
        let p = lineEnd + 2;
        for (;;) {
          const e = buf.indexOf('\r\n', p);
          if (e < 0) return ended ? cut(base, parts, true, buf.length) : undefined;
          if (e === p) {
            return { response: { ...base, body: Buffer.concat(parts), chunked: true, complete: true }, consumed: e + 2 };
          }
          p = e + 2;
        }
      }
      const dataStart = lineEnd + 2;
      if (buf.length < dataStart + size + 2) {
        if (!ended) return undefined;
        parts.push(buf.subarray(dataStart, Math.min(buf.length, dataStart + size)));
        return cut(base, parts, true, buf.length);
      }
      parts.push(buf.subarray(dataStart, dataStart + size));
      pos = dataStart + size + 2;
    }
  }
  const cl = headers['content-length'];
  if (cl !== undefined) {
    const n = Number(cl);
    if (buf.length - pos >= n)
      return { response: { ...base, body: buf.subarray(pos, pos + n), chunked: false, complete: true }, consumed: pos + n };
    return ended ? cut(base, [buf.subarray(pos)], false, buf.length) : undefined;
  }
  // Neither length nor chunking: the body runs to the end of the connection.
  if (!ended) return undefined;
  return { response: { ...base, body: buf.subarray(pos), chunked: false, complete: true }, consumed: buf.length };
}

function cut(base: Omit<RawResponse, 'body' | 'chunked' | 'complete'>, parts: Buffer[], chunked: boolean, consumed: number) {
  return { response: { ...base, body: Buffer.concat(parts), chunked, complete: false }, consumed };
}

// ---------------------------------------------------------------------------------------------
// A plain upstream the test controls.

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: readonly string[];
  /** The socket it came on (index into connections order), to see connection reuse. */
  readonly connection: number;
}

export interface RecordingServer {
  /** e.g. http://127.0.0.1:PORT/fhir */
  readonly url: string;
  readonly port: number;
  /** Every request, recorded as soon as its head arrived (before any body). */
  readonly requests: SeenRequest[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  readonly server: http.Server;
  close(): Promise<void>;
}

/**
 * A node:http server whose handler the test writes. By default it answers every request with a
 * small FHIR JSON resource after reading the body. Closed (all connections cut) at teardown.
 */
export async function startRecordingServer(
  t: Teardown,
  handler?: (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void,
  opts: { basePath?: string; port?: number } = {},
): Promise<RecordingServer> {
  const requests: SeenRequest[] = [];
  let connections = 0;
  const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    const seen: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: { ...req.headers },
      rawHeaders: [...req.rawHeaders],
      connection: (req.socket as net.Socket & { __n?: number }).__n ?? -1,
    };
    requests.push(seen);
    if (handler) {
      handler(req, res, seen);
      return;
    }
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({ resourceType: 'Patient', id: 'p1' });
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.on('connection', (s: net.Socket & { __n?: number }) => {
    s.__n = connections++;
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  let closed = false;
  const close = () =>
    new Promise<void>((r) => {
      if (closed) return r();
      closed = true;
      server.closeAllConnections();
      server.close(() => r());
    });
  t.teardown(close);
  return {
    url: `http://127.0.0.1:${port}${opts.basePath ?? '/fhir'}`,
    port,
    requests,
    get connections() {
      return connections;
    },
    server,
    close,
  };
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The error code an OperationOutcome carries (issue[0].details.coding[0].code). */
export function outcomeCode(body: Buffer | string | unknown): string | undefined {
  const v: unknown = Buffer.isBuffer(body) ? JSON.parse(body.toString('utf8')) : typeof body === 'string' ? JSON.parse(body) : body;
  const oo = v as { resourceType?: string; issue?: { details?: { coding?: { code?: string }[] } }[] };
  if (oo?.resourceType !== 'OperationOutcome') return undefined;
  return oo.issue?.[0]?.details?.coding?.[0]?.code;
}
