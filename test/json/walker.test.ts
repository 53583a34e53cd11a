// The one JSON walk, driven by a small test policy: keys named `hold*`, `stream*`, `skip*` get
// that route, everything else passes; `once: true` refuses every repeated key. What matters is
// what the walker owns: limits, refused duplicates, the forbidden-string probe, what it writes.
import t from 'tap';
import fc from 'fast-check';
import type { JsonToken } from '../../src/json/tokenizer.js';
import { JsonWalker, pathBelow, type Container, type Route, type WalkOptions } from '../../src/json/walker.js';
import { JsonWriter } from '../../src/json/writer.js';

class WalkError extends Error {}
const FORBIDDEN = 'urn:forbidden';
class Forbidden extends Error {}
/** The screen's parts (WalkOptions.screen): a string holding `/_f/` and, after it, `?` is refused. */
const SCREEN = ['/_f/', '?'];
class Screened extends Error {}

interface Walked {
  out: string;
  held: [string | undefined, unknown][];
  streamed: string[];
  opened: { kind: string; name: string | undefined; key: string | undefined; index: number; depth: number; path: string }[];
  closed: number;
}

interface Options {
  once?: boolean;
  limits?: Partial<Pick<WalkOptions, 'maxDepth' | 'maxKey' | 'hold'>>;
  /** Hooks answer with a promise (a policy that waits on a store). */
  async?: boolean;
  /** Route a top-level value this way (the document itself). */
  root?: Route;
  /** With the screen on; the policy screens held `holdOwn` members itself. */
  screen?: boolean;
}

/** Walks `input` cut at the given sizes (cycled); returns what the policy saw and the writer wrote. */
async function walk(input: string | Buffer, cut: readonly number[] = [Number.MAX_SAFE_INTEGER], o: Options = {}): Promise<Walked> {
  const bytes = typeof input === 'string' ? Buffer.from(input) : input;
  const writer = new JsonWriter();
  const w: Walked = { out: '', held: [], streamed: [], opened: [], closed: 0 };
  let stream: string | undefined;
  const later = <T>(v: T): T | Promise<T> => (o.async ? new Promise<T>((r) => setImmediate(() => r(v))) : v);
  let root: Container<undefined> | undefined;
  const walker: JsonWalker<undefined> = new JsonWalker<undefined>(
    {
      route(parent: Container<undefined> | undefined, key: string | undefined, first: JsonToken): Route {
        if (!parent) return o.root ?? 'pass';
        if (o.once && key !== undefined) walker.once(parent, key);
        if (key?.startsWith('hold')) return 'hold';
        if (key?.startsWith('skip')) return 'skip';
        if (key?.startsWith('stream') && first.name === 'startString') {
          stream = '';
          return 'stream';
        }
        return 'pass';
      },
      open(c) {
        root ??= c;
        w.opened.push({ kind: c.kind, name: c.name, key: c.key, index: c.index, depth: c.depth, path: pathBelow(root, c) });
        return undefined;
      },
      close() {
        w.closed++;
        return later(undefined);
      },
      screensItself: (_parent, key) => key === 'holdOwn',
      held(_parent, key, value) {
        w.held.push([key, value]);
        return later(undefined);
      },
      chunk(text) {
        stream += text;
        return later(undefined);
      },
      streamEnd() {
        w.streamed.push(stream!);
        stream = undefined;
        return later(undefined);
      },
    },
    {
      maxDepth: 64,
      maxKey: 64,
      hold: { maxChars: 10_000, maxDepth: 16 },
      ...o.limits,
      forbid: { text: FORBIDDEN, error: () => new Forbidden('forbidden string') },
      ...(o.screen ? { screen: { parts: SCREEN, breaks: /\s/, error: () => new Screened('screened string') } } : {}),
      writer,
      subject: 'the test document',
      fail: (problem) => new WalkError(problem),
    },
  );
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = Math.max(1, Math.min(cut[i % cut.length], bytes.length - off));
    await walker.push(bytes.subarray(off, off + n));
    off += n;
  }
  await walker.end();
  w.out = writer.take();
  return w;
}

async function refusal(input: string, cut?: readonly number[], o?: Options): Promise<Error | undefined> {
  return walk(input, cut, o).then(
    () => undefined,
    (err: unknown) => err as Error,
  );
}

const cuts = fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 });
const json = fc.jsonValue({ maxDepth: 4, stringUnit: 'grapheme' });

t.test('the writer writes back exactly what passed: JSON.stringify of the input, whatever the chunking (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(json, cuts, async (v, cut) => {
      const text = JSON.stringify(v);
      return (await walk(text, cut)).out === text;
    }),
    { numRuns: 300 },
  );
  await fc.assert(
    fc.asyncProperty(json, cuts, async (v, cut) => (await walk(JSON.stringify(v, null, 2), cut)).out === JSON.stringify(v)),
    { numRuns: 200 },
  );
  t.pass('compact and pretty-printed input, every chunking');
});

t.test('the writer: escapes and multi-byte characters split across chunks come out as JSON.stringify writes them', async (t) => {
  const input = '{"k\\u00e9y" : [ "a\\"b\\\\c\\/d\\n\\u0001", "\\u00e9t\\u00E9", "😀 é €", 1.5e3, -0, true , null ] }';
  // Strings as JSON.stringify writes them; numbers as sent (1.5e3, -0).
  const want = '{"kéy":["a\\"b\\\\c/d\\n\\u0001","été","😀 é €",1.5e3,-0,true,null]}';
  for (const cut of [[1], [2], [3], [5, 1], [input.length]]) t.equal((await walk(input, cut)).out, want, `cut [${cut.join(',')}]`);
});

t.test('depth: maxDepth containers are fine, one more is refused', async (t) => {
  const limits = { maxDepth: 3 };
  t.equal((await walk('[[[]]]', [1], { limits })).out, '[[[]]]');
  t.equal((await walk('{"a":{"b":[1]}}', [1], { limits })).out, '{"a":{"b":[1]}}');
  t.match(await refusal('[[[[]]]]', [1], { limits }), { constructor: WalkError, message: 'the test document is nested too deeply' });
  t.match(await refusal('{"a":{"b":{"c":{}}}}', undefined, { limits }), { message: /nested too deeply/ });
  t.match(await refusal('[{"a":[{}]}]', undefined, { limits }), { message: /nested too deeply/ });
  t.match(await refusal('['.repeat(100_000)), { message: /nested too deeply/ }, 'a deep attack fails fast, by the default limit');
});

t.test('key length: maxKey characters are fine, one more is refused, also when the key arrives in pieces', async (t) => {
  const limits = { maxKey: 8 };
  for (const cut of [[1], [3], [100]]) {
    t.equal((await walk('{"abcdefgh":1}', cut, { limits })).out, '{"abcdefgh":1}', `8 characters, cut [${cut}]`);
    t.match(await refusal('{"abcdefghi":1}', cut, { limits }), { message: 'a JSON key is too long' }, `9 characters, cut [${cut}]`);
  }
  t.equal(
    (await walk('{"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9":1}', [1], { limits })).out,
    '{"éééééééé":1}',
    'counted decoded',
  );
  t.equal(await refusal('{"a":{"skip":{"abcdefghi":1}}}', undefined, { limits }), undefined, 'keys inside a skipped value are not read');
});

t.test('once: a repeated member is refused, however the key is spelled', async (t) => {
  for (const input of [
    '{"a":1,"a":2}',
    '{"a":1,"b":2,"a":3}',
    '{"a":1,"\\u0061":2}', // the same key with an escape
    '{"\\u0061":1,"a":2}',
    '{"é":1,"\\u00e9":2}',
    '{"x":{"a":{},"a":[]}}',
    '{"hold":1,"hold":2}', // before a held value is even read
  ]) {
    for (const cut of [[1], [input.length]])
      t.match(await refusal(input, cut, { once: true }), { constructor: WalkError, message: /duplicate member/ }, `${input} cut [${cut}]`);
  }
  for (const input of ['{"a":{"a":1}}', '[{"a":1},{"a":1}]', '{"a":1,"A":2}', '{"a":1,"a ":2}'])
    t.equal((await walk(input, [1], { once: true })).out, input, `${input}: not a repeat`);
  t.equal((await walk('{"a":1,"a":2}')).out, '{"a":1,"a":2}', 'without once, the policy decides: both pass');
});

t.test('routes: hold builds the value whole and hands it over; nothing of it is written', async (t) => {
  for (const cut of [[1], [4], [1000]]) {
    const w = await walk('{"a":1,"hold":{"x":[1,"two",null,{"y":true}]},"holdN":-2.5,"holdS":"s","b":2}', cut);
    t.same(
      w.held,
      [
        ['hold', { x: [1, 'two', null, { y: true }] }],
        ['holdN', -2.5],
        ['holdS', 's'],
      ],
      `cut [${cut}]`,
    );
    t.equal(w.out, '{"a":1,"b":2}', 'the policy, not the walker, writes what it holds');
  }
});

t.test('routes: hold is bounded in characters (plus a cost per token) and in depth', async (t) => {
  t.match(await refusal(`{"hold":"${'x'.repeat(200)}"}`, [7], { limits: { hold: { maxChars: 100, maxDepth: 8 } } }), {
    message: 'hold is too large',
  });
  t.match(
    await refusal(`{"hold":[${'{},'.repeat(50)}{}]}`, undefined, { limits: { hold: { maxChars: 500, maxDepth: 8 } } }),
    {
      message: 'hold is too large',
    },
    'empty objects cost memory without any text',
  );
  t.match(await refusal('{"hold":[[[[1]]]]}', undefined, { limits: { hold: { maxChars: 1000, maxDepth: 3 } } }), {
    message: 'hold is nested too deeply',
  });
  t.same((await walk('{"hold":[[[1]]]}', undefined, { limits: { hold: { maxChars: 1000, maxDepth: 3 } } })).held, [['hold', [[[1]]]]]);
});

t.test('routes: stream hands a string over in pieces and never writes it', async (t) => {
  const long = 'A'.repeat(5000);
  for (const cut of [[1], [3, 11], [100_000]]) {
    const w = await walk(`{"a":"x","stream":"${long}","stream2":"","streamN":5,"b":"y"}`, cut);
    t.same(w.streamed, [long, ''], `the strings, whole once joined (cut [${cut}])`);
    t.equal(w.out, '{"a":"x","streamN":5,"b":"y"}', 'a non-string is not streamed (the policy routes by the first token)');
  }
  t.same((await walk('{"stream":"a\\"b\\u00e9"}', [1])).streamed, ['a"bé'], 'escapes arrive decoded');
});

t.test('routes: skip drops a value unread and unwritten, whatever it is', async (t) => {
  const input =
    '{"a":1,"skipO":{"x":[1,{"y":"z"}],"w":{}},"skipA":[[],[[]]],"skipS":"text","skipN":12.5,"skipT":true,"skipZ":null,"b":[1]}';
  for (const cut of [[1], [6], [1000]]) {
    const w = await walk(input, cut, { once: true });
    t.equal(w.out, '{"a":1,"b":[1]}', `cut [${cut}]`);
    t.equal(w.opened.length, 2, 'no container inside a skipped value is opened');
  }
  t.equal((await walk('{"skip":"a","b":2}')).out, '{"b":2}', 'a skipped first member leaves no stray comma');
});

t.test('containers: kind, name, key, index, depth and path as the policy sees them', async (t) => {
  const w = await walk('{"a":[{"b":{}},[{}]]}');
  t.same(
    w.opened.map((c) => [c.kind, c.name, c.key, c.index, c.depth, c.path]),
    [
      ['object', undefined, undefined, -1, 1, ''],
      ['array', 'a', 'a', -1, 2, '.a'],
      ['object', 'a', undefined, 0, 3, '.a[0]'], // an item carries its array's name
      ['object', 'b', 'b', -1, 4, '.a[0].b'],
      ['array', 'a', undefined, 1, 3, '.a[1]'],
      ['object', 'a', undefined, 0, 4, '.a[1][0]'],
    ],
  );
  t.equal(w.closed, 6, 'every container closes');
});

t.test('the forbidden string is refused wherever it is a value: passed, held, streamed, split across chunks', async (t) => {
  const where = [
    `{"url":"${FORBIDDEN}"}`,
    `["a","${FORBIDDEN}"]`,
    `"${FORBIDDEN}"`,
    `{"hold":{"extension":[{"url":"${FORBIDDEN}"}]}}`,
    `{"stream":"${FORBIDDEN}"}`,
    `{"url":"urn:forbidde\\u006e"}`, // spelled with an escape
  ];
  for (const input of where)
    for (const cut of [[1], [2, 3], [input.length]]) t.type(await refusal(input, cut), Forbidden, `${input} cut [${cut}]`);
  for (const input of [
    `{"url":"${FORBIDDEN}x"}`,
    `{"url":"x${FORBIDDEN}"}`,
    `{"url":"${FORBIDDEN.slice(0, -1)}"}`,
    `{"stream":"${FORBIDDEN}${FORBIDDEN}"}`,
    `{"skip":"${FORBIDDEN}"}`, // skipped: never read, never written
  ])
    t.equal(await refusal(input, [1]), undefined, `${input} is fine`);
});

t.test('the screen: a string holding its parts in order is refused, passed or held, whatever the chunking and escapes', async (t) => {
  const screen = { screen: true };
  for (const input of [
    '{"url":"http://GW:8443/fhir/_f/Binary/1/b?sig=x"}',
    '["note: see https://gw/fhir/_f/x?y"]',
    '"/_f/?"',
    '{"hold":{"extension":[{"valueUrl":"h://a/_f/b?c"}]}}',
    '{"url":"\/_f\/b\u003fc"}', // spelled with escapes
    '{"url":"h://gw/fhir/%5Ff/b?c"}', // percent-encoded, as a URL parser reads it
    '{"div":"<a href=\\"h://gw/_f/b&#x3F;c\\">x</a>"}', // a character reference, as a browser reads it
    '{"a":{"b":[{"c":"long ' + 'x'.repeat(5000) + ' h://gw/_f/' + 'y'.repeat(5000) + '?sig ' + 'z'.repeat(5000) + '"}]}}',
  ])
    for (const cut of [[1], [2, 3], [input.length]])
      t.type(await refusal(input, cut, screen), Screened, `${input.slice(0, 60)} cut [${cut}]`);
  for (const input of [
    '{"url":"h://gw/fhir/_f/b"}', // no query
    '{"url":"h://gw/fhir?x=/_f/"}', // the query before the path
    '{"url":"h://gw/fhir/_F/b?c"}', // another segment: never served
    '{"note":"see /_f/ here; ok?"}', // the query is another token's
    '{"a":{"b":[{"c":"long ' + 'x'.repeat(5000) + ' h://gw/_f/' + 'y'.repeat(5000) + ' ?sig"}]}}',
    '{"stream":"/_f/?"}', // streamed: content, the policy's to judge
    '{"skip":"/_f/?"}', // never read, never written
    '{"holdOwn":{"url":"/_f/?"}}', // the policy checks it itself
    '{"/_f/?":1}', // a key, not a value
  ])
    t.equal(await refusal(input, [1], screen), undefined, `${input} is fine`);
  t.equal(await refusal('{"url":"/_f/?"}'), undefined, 'no screen, no refusal');
  // The parts split across every possible pair of chunks.
  t.type(await refusal('{"note":"/_f/ x /_f/y?"}', [1], screen), Screened, 'a second token that holds both');
  const input = '{"u":"ab/_f/cd?ef"}';
  for (let i = 1; i < input.length; i++) {
    t.type(await refusal(input, [i, 1], screen), Screened, `cut at ${i}`);
  }
});

t.test('hooks that return promises pause the walk; the outcome is the same as with synchronous hooks (property)', async (t) => {
  const doc = (v: unknown) => JSON.stringify({ a: v, hold: v, stream: 'text', skip: v, b: [v] });
  await fc.assert(
    fc.asyncProperty(json, cuts, async (v, cut) => {
      const sync = await walk(doc(v), cut);
      const paused = await walk(doc(v), cut, { async: true });
      return JSON.stringify(sync) === JSON.stringify(paused);
    }),
    { numRuns: 50 },
  );
  t.pass('held, streamed, written and opened alike');
});

t.test('a truncated document is refused at end(); so is an empty one', async (t) => {
  for (const input of [
    '{"a":1',
    '{"a":',
    '{"a"',
    '{"a',
    '[1,2',
    '["abc',
    '"abc',
    '{"stream":"abc',
    '{"hold":{"x":1}',
    '{"skip":[1',
    'tru',
    '',
  ])
    t.match(
      await refusal(input, [1]),
      { constructor: WalkError, message: /ends inside a JSON value|is not valid JSON/ },
      JSON.stringify(input),
    );
  t.equal((await walk('42')).out, '42', 'a number at the top level ends with the input');
  t.equal((await walk(' {} \n')).out, '{}', 'whitespace around the value is fine');
});

t.test('a second top-level value is refused', async (t) => {
  for (const input of ['{}{}', '{} {}', '[] 1', '1 2', '"a""b"', 'null null', '{"a":1}]', '{"a":1}}'])
    t.match(await refusal(input, [1]), { constructor: WalkError, message: /is not valid JSON/ }, input);
});

t.test('malformed JSON is refused through the policy’s fail()', async (t) => {
  for (const input of ['{"a":}', '{a:1}', "{'a':1}", '[1,]', '{"a":1,}', '[01]', '"\\x"', 'NaN', '{"a" 1}', '\u0000'])
    t.type(await refusal(input, [1]), WalkError, JSON.stringify(input));
});
