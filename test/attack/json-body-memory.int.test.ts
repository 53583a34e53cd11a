// FINDING: a FHIR JSON Binary body is not processed in bounded memory, although docs/binary.md
// promises it "is read token by token ... never held whole":
// 1. BinaryPlane.writeResource (src/binary/plane.ts) reads the whole rewritten spool back with
//    readFile + JSON.parse to find securityContext. Only `data` was lifted out: any other member
//    (a 40 MB `meta.tag[0].display`, an unknown member) is loaded whole, more than once (bytes,
//    string, parsed copy).
// 2. Held members (`_data`, `size`, `hash`; src/rewrite/externalize.ts, assemble()) are built
//    in memory bounded by MAX_HELD_CHARS, which counts only string and number characters:
//    `"_data":{"extension":[{},{},{},…]}` is 3 bytes per object on the wire and tens of bytes of
//    heap each. Under the default policy's 100 MiB Binary write limit that is gigabytes: the
//    process dies (a DoS for every client). src/rewrite/extract.ts keep() has the same counter.
// Measured in-process (the gateway runs in the test's process), each against a control that
// sends the same bytes where the engine streams them.
import { request, type ClientRequest } from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Socket } from 'node:net';
import t from 'tap';
import { stack, type Stack } from '../helpers/binary-stack.js';
import { eventually } from '../helpers/poll.js';
import { outcomeCodeOf } from './helpers.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;
const used = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
};

/** The answer to a request: its status and its OperationOutcome code. */
type Answer = [status: number, code: string | undefined];

/** Opens a POST /Binary and writes head + `count` copies of `unit` with backpressure; the caller ends it. */
async function open(
  s: Stack,
  headers: Record<string, string>,
  head: string,
  unit: string,
  count: number,
): Promise<{ req: ClientRequest; done: Promise<Answer>; answered: () => boolean }> {
  const url = new URL(`${s.gw.base}/Binary`);
  let req!: ClientRequest;
  let answered = false;
  const done = new Promise<Answer>((resolve, reject) => {
    req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/fhir+json' },
        agent: false, // a connection of its own, whose gateway side can be watched
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve([res.statusCode ?? 0, outcomeCodeOf(Buffer.concat(chunks).toString('utf8'))]));
      },
    );
    req.on('error', reject);
  });
  const perBlock = Math.max(1, Math.floor(MiB / unit.length));
  const block = Buffer.from(unit.repeat(perBlock));
  req.write(head);
  for (let left = count; left > 0;) {
    const n = Math.min(left, perBlock);
    left -= n;
    if (req.destroyed) break;
    // A gateway that refuses midway closes the connection: stop writing then, rather than wait for a drain.
    if (!req.write(n === perBlock ? block : Buffer.from(unit.repeat(n))))
      // Whichever comes first; the other listener goes too (one left per wait would pile up on the request).
      await new Promise<void>((resolve) => {
        const go = () => {
          req.off('drain', go);
          req.off('close', go);
          resolve();
        };
        req.once('drain', go);
        req.once('close', go);
      });
  }
  return { req, done, answered: () => answered };
}

/** Peak memory growth while the whole request runs (sampled). */
async function peakOf(
  s: Stack,
  headers: Record<string, string>,
  head: string,
  unit: string,
  count: number,
  tail: string,
): Promise<{ answer: Answer; peak: number }> {
  gc();
  const base = used();
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, used() - base)), 5);
  const { req, done } = await open(s, headers, head, unit, count);
  req.end(tail);
  const answer = await done;
  clearInterval(timer);
  return { answer, peak };
}

/** Memory still held (after a full GC) once everything but the closing brace has been sent and read. */
async function retainedOf(
  s: Stack,
  headers: Record<string, string>,
  head: string,
  unit: string,
  count: number,
  tail: string,
): Promise<{ answer: Answer; retained: number }> {
  // The gateway's side of the connection (it runs in this process): what it has read so far.
  const accepted: Socket[] = [];
  const onConnection = (socket: Socket) => accepted.push(socket);
  s.gw.server.on('connection', onConnection);
  gc();
  const base = used();
  const { req, done, answered } = await open(s, headers, head, unit, count);
  s.gw.server.off('connection', onConnection);
  if (!req.destroyed) req.write(tail.slice(0, -1));
  const served = accepted.find((c) => c.remotePort === req.socket?.localPort);
  // Wait until the gateway has read every byte sent (or refused the request), then see what it still holds.
  await eventually(
    () => req.destroyed || answered() || (served !== undefined && served.bytesRead >= (req.socket?.bytesWritten ?? Infinity)),
    'the gateway reading everything sent',
    60_000,
  );
  gc();
  const retained = used() - base;
  if (!req.destroyed) req.end(tail.slice(-1));
  return { answer: await done, retained };
}

t.test('a large non-data member is loaded whole (readFile + JSON.parse of the spool)', async (t) => {
  const s = await stack(t, { defaultRule: { limits: { maxRequestBytes: 64 * MiB } } });
  // May create Binaries, may not read Patient/p1: refused (403) at the securityContext check,
  // which runs after the spool was read back, and before the upstream sees anything.
  const token = await s.as('user/Binary.c');
  const sc = '{"resourceType":"Binary","contentType":"text/plain","securityContext":{"reference":"Patient/p1"},';
  const size = 40 * MiB;
  // The gateway runs in this process: the longest text given to JSON.parse while the request runs.
  const parse = JSON.parse;
  let longest = 0;
  JSON.parse = ((text: string, reviver?: (this: unknown, key: string, value: unknown) => unknown) => {
    longest = Math.max(longest, String(text).length);
    return parse(text, reviver);
  }) as typeof JSON.parse;
  t.teardown(() => void (JSON.parse = parse));
  const r = await peakOf(s, token, `${sc}"data":"aGVsbG8=","meta":{"tag":[{"display":"`, 'a', size, '"}]}}');
  JSON.parse = parse;
  t.same(r.answer, [403, 'INSUFFICIENT_SCOPE'], 'refused at the securityContext check');
  t.comment(`longest text parsed whole: ${(longest / MiB).toFixed(1)} MiB; sampled peak growth ${(r.peak / MiB).toFixed(0)} MiB`);
  t.ok(longest < MiB, `no part of the body is parsed whole (longest: ${(longest / MiB).toFixed(1)} MiB)`);
});

t.test('a held member made of empty objects is assembled in memory without bound', async (t) => {
  const s = await stack(t, { defaultRule: { limits: { maxRequestBytes: 64 * MiB } } });
  const token = await s.as('user/Binary.c');
  const count = 2_000_000; // 6 MB on the wire
  // Declared PDF, text content: refused (415) when the root object ends; until then `_data` is held.
  const head = '{"resourceType":"Binary","contentType":"application/pdf","data":"aGVsbG8=",';
  const control = await retainedOf(s, token, `${head}"meta":{"extension":[{}`, ',{}', count, ']}}');
  t.same(control.answer, [415, 'UNSUPPORTED_MEDIA'], 'control: refused when the root object ends');
  const r = await retainedOf(s, token, `${head}"_data":{"extension":[{}`, ',{}', count, ']}}');
  t.same(r.answer, [400, 'BAD_REQUEST'], 'refused as soon as the held member passes its bound');
  t.comment(
    `${((count * 3) / MiB).toFixed(0)} MiB of {} under meta (streamed): ${(control.retained / MiB).toFixed(0)} MiB retained; under _data (held): ${(r.retained / MiB).toFixed(0)} MiB`,
  );
  t.ok(r.retained < 8 * MiB, 'a held member is bounded by what it holds, not only by its characters');
});
