import t from 'tap';
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { GatewayError, type ErrorCode } from '../../src/errors/catalogue.js';
import { spoolAndScanBundle, type ScannedBundle, type ScanOptions } from '../../src/fhir/bundle-scan.js';
import { eventually } from '../helpers/poll.js';

const MiB = 1024 * 1024;

/**
 * Every open of a spool file (fs/promises `open`, which the scanner awaits before it reads the
 * body) goes through this wrapper: it counts the opens in flight, and can delay them as a busy
 * libuv threadpool would (`openDelayMs`). A test that checks that no spool file turns up late
 * waits for every open to complete (`opensDone`) instead of sleeping for a while.
 */
const realOpen = fsp.open;
let opensStarted = 0;
let opensInFlight = 0;
let openDelayMs = 0;
fsp.open = async (...args: Parameters<typeof realOpen>) => {
  opensStarted++;
  opensInFlight++;
  try {
    if (openDelayMs > 0) await new Promise((r) => setTimeout(r, openDelayMs));
    return await realOpen(...args);
  } finally {
    opensInFlight--;
  }
};
syncBuiltinESMExports(); // the scanner's `import { open }` is a live binding: point it at the wrapper
t.teardown(() => {
  fsp.open = realOpen;
  syncBuiltinESMExports();
});
const opensDone = () => eventually(() => opensInFlight === 0, 'every open of a spool file completing');

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-scan-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The body as a stream of chunks of the given sizes (cycled), like a socket delivering it. */
function chunked(body: Buffer, sizes: readonly number[] = [body.length || 1]): Readable {
  const parts: Buffer[] = [];
  let off = 0;
  let i = 0;
  while (off < body.length) {
    const n = Math.max(1, sizes[i++ % sizes.length]);
    parts.push(body.subarray(off, off + n));
    off += n;
  }
  return Readable.from(parts, { objectMode: false });
}

function opts(dir: string, over: Partial<ScanOptions> = {}): ScanOptions {
  return { dir, maxBytes: 10 * MiB, maxEntries: 1000, ...over };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function scan(dir: string, body: string | Buffer, sizes?: readonly number[], over?: Partial<ScanOptions>): Promise<ScannedBundle> {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  return spoolAndScanBundle(chunked(buf, sizes), opts(dir, over));
}

/** Expects a refusal with `code` (and a message matching `detail`), and no spool file left behind. */
async function refused(
  t: Test,
  dir: string,
  body: string | Buffer | Readable,
  code: ErrorCode,
  detail?: RegExp,
  over?: Partial<ScanOptions>,
  sizes?: readonly number[],
): Promise<GatewayError | undefined> {
  const stream = body instanceof Readable ? body : chunked(typeof body === 'string' ? Buffer.from(body) : body, sizes);
  let got: unknown;
  try {
    const r = await spoolAndScanBundle(stream, opts(dir, over));
    t.fail('expected a refusal', { entries: r.entries });
  } catch (err) {
    got = err;
  }
  t.type(got, GatewayError, 'a GatewayError, never a raw error');
  const err = got as GatewayError;
  t.equal(err?.code, code);
  if (detail) t.match(err?.message, detail);
  // The spool file is removed on failure (also if its open completes after the failure).
  t.same(readdirSync(dir), [], 'no spool file left');
  await opensDone();
  t.same(readdirSync(dir), [], 'still no spool file once every open completed');
  return err;
}

const bundle = (type: string, entries: unknown[], extra: Record<string, unknown> = {}) =>
  JSON.stringify({ resourceType: 'Bundle', type, ...extra, entry: entries });

const entry = (method: string, url: string, resource?: Record<string, unknown>) => ({
  ...(resource ? { resource } : {}),
  request: { method, url },
});

t.test('entries are extracted in order with method, url and resource type; the spool holds the exact bytes', async (t) => {
  const dir = tempDir(t);
  const body = bundle('transaction', [
    entry('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'A' }] }),
    entry('GET', 'Observation?code=1234-5'),
    { fullUrl: 'urn:uuid:1', request: { url: 'Patient/7', method: 'PUT' }, resource: { id: '7', resourceType: 'Patient' } },
    entry('DELETE', 'Encounter/9'),
    entry('PATCH', 'Patient/7', { resourceType: 'Binary', contentType: 'application/json-patch+json', data: 'W10=' }),
  ]);
  const r = await scan(dir, body);
  t.equal(r.type, 'transaction');
  t.same(r.entries, [
    { index: 0, method: 'POST', url: 'Patient', resourceType: 'Patient' },
    { index: 1, method: 'GET', url: 'Observation?code=1234-5', resourceType: undefined },
    { index: 2, method: 'PUT', url: 'Patient/7', resourceType: 'Patient' },
    { index: 3, method: 'DELETE', url: 'Encounter/9', resourceType: undefined },
    { index: 4, method: 'PATCH', url: 'Patient/7', resourceType: 'Binary', largestData: 2 },
  ]);
  t.equal(r.size, Buffer.byteLength(body));
  t.same(readdirSync(dir), [r.file.slice(dir.length + 1)], 'exactly one spool file, in the configured dir');
  t.match(r.file, /fbg-bundle-[0-9a-f-]{36}\.json$/);
  t.equal(statSync(r.file).mode & 0o777, 0o600, 'spool file is private');
  t.equal(sha256(readFileSync(r.file)), sha256(Buffer.from(body)), 'spooled bytes are the received bytes');

  const batch = await scan(dir, bundle('batch', []));
  t.equal(batch.type, 'batch');
  t.same(batch.entries, []);
});

t.test('only the entry-level request and resource are read, not look-alikes nested deeper', async (t) => {
  const dir = tempDir(t);
  const body = JSON.stringify({
    resourceType: 'Bundle',
    meta: { resourceType: 'NotMe', type: 'searchset' },
    type: 'batch',
    entry: [
      {
        resource: {
          resourceType: 'Parameters',
          parameter: [{ name: 'request', resource: { resourceType: 'Observation', request: { method: 'DELETE', url: 'Patient/1' } } }],
          contained: [{ resourceType: 'Observation' }],
        },
        request: { method: 'POST', url: 'Parameters' },
        response: { status: '201', location: 'Observation/1' },
        search: { mode: 'match' },
      },
    ],
  });
  const r = await scan(dir, body);
  t.same(r.entries, [{ index: 0, method: 'POST', url: 'Parameters', resourceType: 'Parameters' }]);
});

// ---------------------------------------------------------------------------------------------
// Chunking: the result must not depend on where the network cut the body.
// ---------------------------------------------------------------------------------------------

const methodArb = fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD');
const typeArb = fc.constantFrom('Patient', 'Observation', 'Binary', 'DocumentReference', 'Media');
// Unicode, escapes, quotes and backslashes, multi-byte characters that chunking can split.
const textArb = fc.string({ unit: 'binary', maxLength: 40 });
const entryArb = fc
  .record(
    {
      method: methodArb,
      url: fc.tuple(typeArb, textArb).map(([ty, q]) => `${ty}?x=${q}`),
      resource: fc.option(
        fc.record({
          resourceType: typeArb,
          text: textArb,
          nested: fc.array(fc.record({ resourceType: typeArb, request: fc.record({ method: methodArb }) }), { maxLength: 2 }),
        }),
        { nil: undefined },
      ),
      resourceFirst: fc.boolean(),
      fullUrl: fc.option(textArb, { nil: undefined }),
    },
    { requiredKeys: ['method', 'url', 'resource', 'resourceFirst'] },
    // A resource on a GET, HEAD or DELETE entry is refused (tested on its own below).
  )
  .map((e) => (['GET', 'HEAD', 'DELETE'].includes(e.method) ? { ...e, resource: undefined } : e));
const bundleArb = fc.record({
  type: fc.constantFrom('batch', 'transaction'),
  entries: fc.array(entryArb, { maxLength: 12 }),
  pretty: fc.boolean(),
  padding: textArb,
});

type BundleSpec = typeof bundleArb extends fc.Arbitrary<infer T> ? T : never;

function render(b: BundleSpec): Buffer {
  const entries = b.entries.map((e) => {
    const req = { request: { method: e.method, url: e.url } };
    const res = e.resource ? { resource: e.resource } : {};
    return { ...(e.fullUrl !== undefined ? { fullUrl: e.fullUrl } : {}), ...(e.resourceFirst ? { ...res, ...req } : { ...req, ...res }) };
  });
  const obj = { id: b.padding, resourceType: 'Bundle', type: b.type, entry: entries };
  return Buffer.from(b.pretty ? JSON.stringify(obj, null, 2) : JSON.stringify(obj));
}

t.test('identical results whatever the chunk sizes (1 byte .. 64 KiB)', async (t) => {
  const dir = tempDir(t);
  await fc.assert(
    fc.asyncProperty(bundleArb, fc.array(fc.integer({ min: 1, max: 64 * 1024 }), { minLength: 1, maxLength: 20 }), async (b, sizes) => {
      const body = render(b);
      const whole = await scan(dir, body);
      const cut = await scan(dir, body, sizes);
      const expected = b.entries.map((e, index) => ({ index, method: e.method, url: e.url, resourceType: e.resource?.['resourceType'] }));
      try {
        return (
          JSON.stringify(whole.entries) === JSON.stringify(expected) &&
          JSON.stringify(cut.entries) === JSON.stringify(expected) &&
          whole.entries.every((e, i) => e.url === expected[i].url) &&
          cut.entries.every((e, i) => e.url === expected[i].url) &&
          whole.type === b.type &&
          cut.type === b.type &&
          cut.size === body.length &&
          sha256(readFileSync(cut.file)) === sha256(body) &&
          sha256(readFileSync(whole.file)) === sha256(body)
        );
      } finally {
        rmSync(whole.file, { force: true });
        rmSync(cut.file, { force: true });
      }
    }),
    { numRuns: 150 },
  );
  t.same(readdirSync(dir), []);
});

t.test('one byte at a time: multi-byte characters and escapes split across chunks', async (t) => {
  const dir = tempDir(t);
  const body = bundle('batch', [
    entry('GET', 'Patient?name=Zoë-😀-\u00e9\u4e2d'),
    {
      'requ\u0065st': { 'm\u00e9thod-not': 1, method: 'POST', url: 'Observation' },
      resource: { resourceType: 'Observation', note: [{ text: '"\\\u2028' }] },
    },
  ]).replace('\\"', '\\u0022');
  const r = await scan(dir, body, [1]);
  t.same(r.entries, [
    { index: 0, method: 'GET', url: 'Patient?name=Zoë-😀-é中', resourceType: undefined },
    { index: 1, method: 'POST', url: 'Observation', resourceType: 'Observation' },
  ]);
  t.equal(sha256(readFileSync(r.file)), sha256(Buffer.from(body)));
});

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

t.test('duplicate keys in the objects that are read are refused', async (t) => {
  const start = '{"resourceType":"Bundle","type":"batch","entry":[';
  const cases: [string, string][] = [
    ['root resourceType', '{"resourceType":"Bundle","resourceType":"Bundle","type":"batch","entry":[]}'],
    ['root type', '{"resourceType":"Bundle","type":"batch","type":"transaction","entry":[]}'],
    ['root entry', '{"resourceType":"Bundle","type":"batch","entry":[],"entry":[{"request":{"method":"DELETE","url":"Patient/1"}}]}'],
    ['entry request', `${start}{"request":{"method":"GET","url":"Patient/1"},"request":{"method":"DELETE","url":"Patient/1"}}]}`],
    [
      'entry resource',
      `${start}{"resource":{"resourceType":"Patient"},"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Patient"}}]}`,
    ],
    ['request method', `${start}{"request":{"method":"GET","url":"Patient/1","method":"DELETE"}}]}`],
    ['request url', `${start}{"request":{"method":"GET","url":"Patient/1","url":"Observation/1"}}]}`],
    [
      'resource resourceType',
      `${start}{"resource":{"resourceType":"Patient","resourceType":"Observation"},"request":{"method":"POST","url":"Patient"}}]}`,
    ],
    // The same key spelled with an escape is the same key.
    ['escaped method', `${start}{"request":{"method":"GET","m\\u0065thod":"DELETE","url":"Patient/1"}}]}`],
    ['escaped root type', '{"resourceType":"Bundle","type":"batch","\\u0074ype":"transaction","entry":[]}'],
  ];
  for (const [name, body] of cases) {
    t.test(name, async (t) => {
      const dir = tempDir(t);
      await refused(t, dir, body, 'BAD_BUNDLE', /duplicate member/);
      // …also when the duplicate arrives one byte at a time.
      await refused(t, dir, body, 'BAD_BUNDLE', /duplicate member/, undefined, [1]);
    });
  }
});

t.test('keys the scanner does not read may repeat: only read keys are remembered', async (t) => {
  const dir = tempDir(t);
  const start = '{"resourceType":"Bundle","type":"batch","entry":[';
  const dup = await scan(
    dir,
    `${start}{"resource":{"resourceType":"Patient","id":"1","id":"2"},"request":{"method":"PUT","url":"Patient/1"}}]}`,
  );
  t.same(
    dup.entries.map((e) => [e.method, e.url, e.resourceType]),
    [['PUT', 'Patient/1', 'Patient']],
    "resource.id is not read: its duplicate is the upstream's to judge",
  );
  // 200k distinct keys in a tracked object: not read, not remembered, accepted.
  const keys = Array.from({ length: 200_000 }, (_, i) => `"k${i}":0`).join(',');
  const flood = await scan(dir, `${start}{${keys},"request":{"method":"GET","url":"Patient/1"}}]}`, undefined, {
    maxBytes: 16 * 1024 * 1024,
  });
  t.same(
    flood.entries.map((e) => [e.method, e.url]),
    [['GET', 'Patient/1']],
  );
});

t.test('shape: not a Bundle, wrong type, entry not an array of objects, missing request', async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      'entry as object',
      '{"resourceType":"Bundle","type":"batch","entry":{"request":{"method":"DELETE","url":"Patient/1"}}}',
      /entry must be an array/,
    ],
    ['entry as string', '{"resourceType":"Bundle","type":"batch","entry":"x"}', /entry must be an array/],
    ['entry as null', '{"resourceType":"Bundle","type":"batch","entry":null}', /entry must be an array/],
    ['entry as number', '{"resourceType":"Bundle","type":"batch","entry":1}', /entry must be an array/],
    [
      'entry item an array',
      '{"resourceType":"Bundle","type":"batch","entry":[[{"request":{"method":"DELETE","url":"Patient/1"}}]]}',
      /entry 0 must be an object/,
    ],
    [
      'entry item a scalar',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1"}},1]}',
      /entry 1 must be an object/,
    ],
    ['entry item null', '{"resourceType":"Bundle","type":"batch","entry":[null]}', /entry 0 must be an object/],
    [
      'request as array',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":[{"method":"DELETE","url":"Patient/1"}]}]}',
      /request must be an object/,
    ],
    [
      'resource as array',
      '{"resourceType":"Bundle","type":"batch","entry":[{"resource":[{"resourceType":"Observation"}],"request":{"method":"POST","url":"Patient"}}]}',
      /resource must be an object/,
    ],
    ['not a Bundle', '{"resourceType":"Patient","type":"batch","entry":[]}', /resourceType must be Bundle/],
    ['no resourceType', '{"type":"batch","entry":[]}', /resourceType must be Bundle/],
    ['resourceType not a string', '{"resourceType":["Bundle"],"type":"batch","entry":[]}', /resourceType must be Bundle/],
    ['searchset', '{"resourceType":"Bundle","type":"searchset","entry":[]}', /type must be batch or transaction/],
    ['collection', '{"resourceType":"Bundle","type":"collection","entry":[]}', /type must be batch or transaction/],
    ['no type', '{"resourceType":"Bundle","entry":[]}', /type must be batch or transaction/],
    ['type wrong case', '{"resourceType":"Bundle","type":"Transaction","entry":[]}', /type must be batch or transaction/],
    ['root array', '[{"resourceType":"Bundle","type":"batch","entry":[]}]', /not a JSON object/],
    ['root string', '"Bundle"', /resourceType must be Bundle/],
    [
      'no request',
      '{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"}}]}',
      /entry 0 has no request\.method or request\.url/,
    ],
    ['no url', '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET"}}]}', /entry 0 has no request/],
    [
      'method not a string',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":1,"url":"Patient/1"}}]}',
      /entry 0 has no request/,
    ],
    ['url too long', bundle('batch', [entry('GET', `Patient?name=${'a'.repeat(9000)}`)]), /url (is )?too (long|large)/],
    ['method too long', bundle('batch', [entry('G'.repeat(100), 'Patient/1')]), /method (is )?too long/],
  ];
  for (const [name, body, detail] of cases) {
    t.test(name, async (t) => {
      const dir = tempDir(t);
      await refused(t, dir, body, 'BAD_BUNDLE', detail);
      await refused(t, dir, body, 'BAD_BUNDLE', detail, undefined, [1]);
    });
  }
});

t.test('a GET, HEAD or DELETE entry carrying a resource is refused, naming the entry, whatever the key order', async (t) => {
  const doc = { resourceType: 'DocumentReference', content: [{ attachment: { data: 'QUJD' } }] };
  for (const method of ['GET', 'HEAD', 'DELETE']) {
    const dir = tempDir(t);
    const resourceFirst = `{"resourceType":"Bundle","type":"batch","entry":[${JSON.stringify(entry('POST', 'Patient', { resourceType: 'Patient' }))},{"resource":${JSON.stringify(doc)},"request":{"method":"${method}","url":"DocumentReference/1"}}]}`;
    const detail = new RegExp(`entry 1: a ${method} entry must not carry a resource \\(Bundle\\.entry\\[1\\]\\.resource\\)`);
    await refused(t, dir, resourceFirst, 'BAD_BUNDLE', detail);
    await refused(
      t,
      dir,
      bundle('transaction', [entry('POST', 'Patient', { resourceType: 'Patient' }), entry(method, 'DocumentReference/1', doc)]),
      'BAD_BUNDLE',
      detail,
      undefined,
      [7],
    );
    await refused(t, dir, bundle('batch', [entry(method, 'Patient/1', {})]), 'BAD_BUNDLE', /entry 0: a .* entry must not carry a resource/);
  }
  // Entries with a body, and bodyless ones without a resource, are what they were.
  const dir = tempDir(t);
  const ok = await scan(
    dir,
    bundle('batch', [entry('PUT', 'Patient/1', { resourceType: 'Patient' }), entry('GET', 'Patient/1'), entry('DELETE', 'Patient/2')]),
  );
  t.same(
    ok.entries.map((e) => e.method),
    ['PUT', 'GET', 'DELETE'],
  );
});

t.test('invalid JSON is BAD_BUNDLE', async (t) => {
  const ok = bundle('batch', [entry('GET', 'Patient/1')]);
  const cases: [string, string | Buffer][] = [
    ['empty', ''],
    ['whitespace', '  \n'],
    ['truncated', ok.slice(0, -3)],
    ['trailing garbage', `${ok}x`],
    ['second document', `${ok}${ok}`],
    ['single quotes', "{'resourceType':'Bundle'}"],
    ['trailing comma', '{"resourceType":"Bundle","type":"batch","entry":[],}'],
    ['comment', '{"resourceType":"Bundle", /* c */ "type":"batch","entry":[]}'],
    ['NaN', '{"resourceType":"Bundle","type":"batch","n":NaN,"entry":[]}'],
    ['bare word', 'transaction'],
    ['raw control char in string', '{"resourceType":"Bundle","type":"batch","id":"a\u0001b","entry":[]}'],
    // Invalid UTF-8: an overlong 'm' (0xC1 0xAD) that a lenient decoder would read as a second `method` key.
    [
      'overlong UTF-8 key',
      Buffer.concat([
        Buffer.from('{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1","'),
        Buffer.from([0xc1, 0xad]),
        Buffer.from('ethod":"DELETE"}}]}'),
      ]),
    ],
    [
      'lone continuation byte',
      Buffer.concat([Buffer.from('{"resourceType":"Bundle","type":"batch","id":"'), Buffer.from([0x80]), Buffer.from('","entry":[]}')]),
    ],
    ['truncated multi-byte at the end', Buffer.concat([Buffer.from(ok), Buffer.from([0xe4, 0xb8])])],
  ];
  for (const [name, body] of cases) {
    t.test(name, async (t) => {
      const dir = tempDir(t);
      await refused(t, dir, body, 'BAD_BUNDLE');
      await refused(t, dir, body, 'BAD_BUNDLE', undefined, undefined, [1]);
    });
  }
});

t.test('maxEntries: exactly the limit passes, one more is refused', async (t) => {
  const dir = tempDir(t);
  const five = Array.from({ length: 5 }, (_, i) => entry('GET', `Patient/${i}`));
  const r = await scan(dir, bundle('batch', five), undefined, { maxEntries: 5 });
  t.equal(r.entries.length, 5);
  rmSync(r.file);
  await refused(t, dir, bundle('batch', [...five, entry('DELETE', 'Patient/1')]), 'BAD_BUNDLE', /more than 5 entries/, { maxEntries: 5 });
  // Refused while reading, not after: an endless stream of entries stops at the limit.
  async function* endless() {
    yield Buffer.from('{"resourceType":"Bundle","type":"batch","entry":[');
    for (;;) yield Buffer.from('{"request":{"method":"GET","url":"Patient/1"}},');
  }
  await refused(t, dir, Readable.from(endless()), 'BAD_BUNDLE', /more than 5 entries/, { maxEntries: 5 });
});

t.test('size limit: exactly maxBytes passes, one byte more is PAYLOAD_TOO_LARGE', async (t) => {
  const dir = tempDir(t);
  const body = bundle('batch', [entry('GET', 'Patient/1')]);
  const r = await scan(dir, body, [7], { maxBytes: body.length });
  t.equal(r.size, body.length);
  rmSync(r.file);
  await refused(t, dir, `${body} `, 'PAYLOAD_TOO_LARGE', /limit is \d+ bytes/, { maxBytes: body.length }, [7]);
  // An endless body (one long string) is cut at the limit rather than read to the end.
  async function* endless() {
    yield Buffer.from('{"resourceType":"Bundle","type":"batch","id":"');
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (;;) yield chunk;
  }
  await refused(t, dir, Readable.from(endless()), 'PAYLOAD_TOO_LARGE', undefined, { maxBytes: 1 * MiB });
});

t.test('nesting: a depth bomb is refused, realistic nesting passes', async (t) => {
  const dir = tempDir(t);
  await refused(t, dir, `{"resourceType":"Bundle","type":"batch","meta":${'['.repeat(100_000)}`, 'BAD_BUNDLE', /nested too deeply/);
  await refused(t, dir, `{"a":${'{"a":'.repeat(100_000)}`, 'BAD_BUNDLE', /nested too deeply/);
  // A Questionnaire with items nested 40 deep.
  let item: Record<string, unknown> = { linkId: 'leaf', type: 'string' };
  for (let i = 0; i < 40; i++) item = { linkId: `l${i}`, type: 'group', item: [item] };
  const r = await scan(
    dir,
    bundle('batch', [entry('POST', 'Questionnaire', { resourceType: 'Questionnaire', status: 'draft', item: [item] })]),
  );
  t.same(r.entries, [{ index: 0, method: 'POST', url: 'Questionnaire', resourceType: 'Questionnaire' }]);
});

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

/**
 * `prefix`, then `mib` MiB of 'a' in 64 KiB chunks (one buffer reused), then `suffix`. Samples
 * the heap (after a full collection) every 2 MiB, so a scanner that accumulates the token shows.
 */
function streamed(prefix: string, mib: number, suffix: string, heap: { base: number; peak: number }): Readable {
  async function* gen() {
    gc();
    heap.base = process.memoryUsage().heapUsed;
    yield Buffer.from(prefix);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 1; i <= mib * 16; i++) {
      yield chunk;
      if (i % 32 === 0) {
        gc();
        heap.peak = Math.max(heap.peak, process.memoryUsage().heapUsed);
      }
    }
    yield Buffer.from(suffix);
  }
  return Readable.from(gen());
}

async function settle<T>(p: Promise<T>): Promise<T | Error> {
  return p.catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
}

t.test('huge keys and values are streamed, not accumulated', async (t) => {
  const dir = tempDir(t);
  const cases: [string, string, string][] = [
    [
      '20 MiB key at the root',
      '{"resourceType":"Bundle","type":"batch","',
      '":1,"entry":[{"request":{"method":"GET","url":"Patient/1"}}]}',
    ],
    [
      '20 MiB key in entry.request',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1","',
      '":1}}]}',
    ],
    [
      '20 MiB key in a resource',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","',
      '":1}}]}',
    ],
    [
      '20 MiB attachment data',
      '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"POST","url":"Binary"},"resource":{"resourceType":"Binary","contentType":"text/plain","data":"',
      '"}}]}',
    ],
  ];
  for (const [name, prefix, suffix] of cases) {
    t.test(name, async (t) => {
      const heap = { base: 0, peak: 0 };
      const result = await settle(spoolAndScanBundle(streamed(prefix, 20, suffix, heap), opts(dir, { maxBytes: 30 * MiB })));
      const growth = heap.peak - heap.base;
      if (result instanceof Error) {
        t.type(result, GatewayError, 'refused with a GatewayError');
        t.same(readdirSync(dir), []);
      } else {
        const r = result;
        t.equal(r.entries.length, 1);
        t.equal(r.size, prefix.length + 20 * MiB + suffix.length);
        t.equal(statSync(r.file).size, r.size);
        rmSync(r.file);
      }
      t.ok(growth < 8 * MiB, `heap grew by ${(growth / MiB).toFixed(1)} MiB for a 20 MiB token`);
    });
  }
  t.test('a huge url value is refused, not accumulated', async (t) => {
    const heap = { base: 0, peak: 0 };
    const prefix = '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?x=';
    const result = await settle(spoolAndScanBundle(streamed(prefix, 20, '"}}]}', heap), opts(dir, { maxBytes: 30 * MiB })));
    const growth = heap.peak - heap.base;
    t.type(result, GatewayError);
    t.equal((result as GatewayError).code, 'BAD_BUNDLE');
    t.match((result as GatewayError).message, /url (is )?too (long|large)/);
    t.ok(growth < 8 * MiB, `heap grew by ${(growth / MiB).toFixed(1)} MiB`);
    t.same(readdirSync(dir), []);
  });
});

t.test('a body stream that fails midway (client abort) is a GatewayError and leaves no spool file', async (t) => {
  const dir = tempDir(t);
  async function* broken() {
    yield Buffer.from('{"resourceType":"Bundle","type":"batch","entry":[');
    // Part of the scenario: the failure comes later than the first bytes, as a socket's would.
    await new Promise((r) => setTimeout(r, 5));
    throw new Error('socket hang up');
  }
  await refused(t, dir, Readable.from(broken()), 'BAD_BUNDLE');
});

t.test('the spool file is removed on every failure, whatever the chunking (property)', async (t) => {
  const dir = tempDir(t);
  const bad = fc.constantFrom(
    '{"resourceType":"Bundle","type":"batch","type":"batch","entry":[]}',
    '{"resourceType":"Bundle","type":"batch","entry":{}}',
    '{"resourceType":"Patient"}',
    '{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET"}}]}',
    '{"resourceType":"Bundle","type":"batch","entry":[',
    'x',
    '',
  );
  await fc.assert(
    fc.asyncProperty(bad, fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 5 }), async (body, sizes) => {
      try {
        await scan(dir, body, sizes);
        return false;
      } catch (err) {
        return err instanceof GatewayError && err.code === 'BAD_BUNDLE' && readdirSync(dir).length === 0;
      }
    }),
    { numRuns: 100 },
  );
  await opensDone();
  t.same(readdirSync(dir), [], 'none once every open completed');
});

t.test('the spool file is removed even when the failure comes before the file exists (slow filesystem)', async (t) => {
  const dir = tempDir(t);
  // Every open takes 30 ms, as on a busy libuv threadpool: a body that fails (the client went
  // away) while its spool file is still being opened, and bodies refused right after, must not
  // leave the file behind once it exists.
  openDelayMs = 30;
  t.teardown(() => {
    openDelayMs = 0;
  });
  const before = opensStarted;
  const gone = new Readable({ read() {} });
  gone.on('error', () => undefined); // as a request socket's: nobody is listening yet while the file opens
  setImmediate(() => gone.destroy(new Error('socket hang up')));
  await refused(t, dir, gone, 'BAD_BUNDLE');
  for (const body of ['[', 'x', '{"a":1,"a":2}', '{"resourceType":"Bundle","type":"batch","entry":{}}']) {
    await refused(t, dir, body, 'BAD_BUNDLE');
  }
  t.equal(opensStarted - before, 5, 'each spool file was opened through the slow open');
  await opensDone();
  t.same(readdirSync(dir), [], 'nothing appeared after the delayed opens completed');
});

t.test('a spool directory that cannot be written is an internal error, not a bad Bundle', async (t) => {
  const dir = tempDir(t);
  const missing = join(dir, 'does-not-exist');
  const err = await spoolAndScanBundle(chunked(Buffer.from(bundle('batch', []))), opts(missing)).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, GatewayError);
  t.equal((err as GatewayError).code, 'INTERNAL');
  t.equal((err as GatewayError).status, 500);
  t.notMatch((err as GatewayError).message, /does-not-exist/, 'the path is not shown to clients');
  t.same(readdirSync(dir), []);
});

t.test('conditional references anywhere in an entry resource are kept, to be authorized as searches', async (t) => {
  const dir = tempDir(t);
  const body = bundle('transaction', [
    {
      resource: {
        resourceType: 'Observation',
        subject: { reference: 'Patient?identifier=x' },
        performer: [{ reference: 'Practitioner/1' }, { reference: 'Organization?name=y' }],
        extension: [{ url: 'http://x', valueReference: { reference: 'Device?udi=z' } }],
      },
      request: { method: 'POST', url: 'Observation' },
    },
    { resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
  ]);
  const r = await scan(dir, body);
  t.same(r.entries[0].conditionalReferences, ['Patient?identifier=x', 'Organization?name=y', 'Device?udi=z']);
  t.equal(r.entries[1].conditionalReferences, undefined, 'none: absent');
  rmSync(r.file);
  const many = Array.from({ length: 101 }, () => ({ reference: 'Patient?a=b' }));
  await refused(
    t,
    dir,
    bundle('transaction', [
      { resource: { resourceType: 'Observation', performer: many }, request: { method: 'POST', url: 'Observation' } },
    ]),
    'BAD_BUNDLE',
    /more than 100 conditional references/,
  );
  await refused(
    t,
    dir,
    bundle('transaction', [
      {
        resource: { resourceType: 'Observation', subject: { reference: `Patient?x=${'a'.repeat(9000)}` } },
        request: { method: 'POST', url: 'Observation' },
      },
    ]),
    'BAD_BUNDLE',
    /too (long|large)/,
  );
});

t.test('the largest attachment data of each entry is counted as it streams', async (t) => {
  const dir = tempDir(t);
  const data = (n: number) => Buffer.alloc(n, 7).toString('base64');
  const body = bundle('batch', [
    {
      resource: {
        resourceType: 'Parameters',
        parameter: [
          { name: 'a', valueAttachment: { data: data(1000) } },
          { name: 'b', valueAttachment: { data: data(5000) } },
        ],
      },
      request: { method: 'POST', url: 'Patient/$op' },
    },
    { resource: { resourceType: 'Provenance', signature: [{ data: data(9000) }] }, request: { method: 'POST', url: 'Provenance' } },
    { request: { method: 'GET', url: 'Patient/1' } },
  ]);
  for (const cut of [65536, 3]) {
    const r = await scan(dir, body, [cut]);
    t.equal(r.entries[0].largestData, 5000, `the larger of two (cut ${cut})`);
    t.equal(r.entries[1].largestData, undefined, 'Signature data is not attachment content');
    t.equal(r.entries[2].largestData, undefined, 'no resource');
    rmSync(r.file);
  }
});
