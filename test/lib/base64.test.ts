// Base64 both ways, as streams: decoding attachment data that arrives in pieces of any length
// (strictly: what is stored is exactly what was meant), encoding stored content back into it.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import fc from 'fast-check';
import { GatewayError } from '../../src/errors/catalogue.js';
import { Base64Decoder, Base64Encode, base64Chunks, base64Length, decodedSize } from '../../src/lib/base64.js';

/** `s` cut at the given lengths (cycled), as a tokenizer hands a long string over. */
function pieces(s: string, sizes: readonly number[]): string[] {
  const out: string[] = [];
  for (let off = 0, i = 0; off < s.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]);
    out.push(s.slice(off, off + n));
    off += n;
  }
  return out;
}

function decode(parts: readonly string[]): Buffer {
  const d = new Base64Decoder();
  const out = parts.map((p) => d.push(p));
  d.end();
  return Buffer.concat(out);
}

/** The error decoding `parts` ends with, at push or at end; undefined when it decoded. */
function decodeError(parts: readonly string[]): unknown {
  try {
    decode(parts);
    return undefined;
  } catch (err) {
    return err;
  }
}

const sizes = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 });

t.test('Base64Decoder: pieces of any length give the bytes Buffer.from(…, base64) gives (property)', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), sizes, (bytes, cut) => {
      const text = Buffer.from(bytes).toString('base64');
      return decode(pieces(text, cut)).equals(Buffer.from(bytes));
    }),
  );
  t.pass('for every content and every cut');
});

t.test('Base64Decoder: whitespace anywhere (FHIR base64Binary allows it) is dropped (property)', async (t) => {
  const ws = fc.constantFrom(' ', '\n', '\r\n', '\t', '  ');
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 120 }),
      fc.array(fc.tuple(fc.nat(), ws), { maxLength: 8 }),
      sizes,
      (bytes, gaps, cut) => {
        let text = Buffer.from(bytes).toString('base64');
        for (const [at, w] of gaps) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + w + text.slice(i);
        }
        return decode(pieces(text, cut)).equals(Buffer.from(bytes));
      },
    ),
  );
  t.same(decode(['aGVs', 'bG8=\n']), Buffer.from('hello'), 'a trailing newline after the padding');
  t.same(decode(['aG', ' ', 'Vs\nbG', '8', '=']), Buffer.from('hello'));
});

t.test('Base64Decoder: what is not base64 is refused with BAD_REQUEST, however it is cut', async (t) => {
  const bad: [string, string][] = [
    ['aGVsbG8*', 'a character outside the alphabet'],
    ['aGVs-G8=', 'base64url is not base64'],
    ['aGVs_G8=', 'base64url is not base64'],
    ['aGVsbG8=\u0000', 'NUL'],
    ['aGVs\fbG8=', 'a form feed is not whitespace here'],
    ['aGVsbG8=aGVs', 'data after the final padded group'],
    ['aGVsbG8==', 'too much padding'],
    ['aG=sbG8=', 'padding inside the value'],
    ['a===', 'padding where a group has only one character'],
    ['====', 'padding alone'],
    ['aGV=bG8=', 'two padded groups'],
    ['aGVsbG8', 'a truncated final group (7 characters)'],
    ['aGVsbG', 'a truncated final group (6 characters)'],
    ['a', 'one character'],
    ['aGVsb', 'a group of one character'],
    ['aGVsbG8=  x', 'data after the padding, past whitespace'],
  ];
  for (const [text, what] of bad) {
    for (const cut of [[text.length], [1], [2, 3], [4]]) {
      const err = decodeError(pieces(text, cut));
      t.ok(err instanceof GatewayError && err.code === 'BAD_REQUEST', `${what}: ${JSON.stringify(text)} cut [${cut.join(',')}]`);
    }
  }
  t.match(decodeError(['aGVsbG8']), { message: /truncated final group/ }, 'a truncated group is found only at end()');
  // Misplaced padding is refused by the push that brings it, before the store gets more bytes.
  for (const text of ['QUJDA=', 'QUJDA==', 'QUJD=']) t.throws(() => new Base64Decoder().push(text), { code: 'BAD_REQUEST' }, text);
});

t.test('Base64Decoder: padding split from its group still decodes; nothing decodes before its group is whole', async (t) => {
  const d = new Base64Decoder();
  t.equal(d.push('aGVsbG').length, 3, 'one whole group: "hel"');
  t.equal(d.push('8').length, 0, 'three characters of the next group wait');
  t.same(d.push('='), Buffer.from('lo'), 'the padding completes it');
  t.equal(d.push('').length, 0, 'an empty piece after the end is fine');
  t.equal(d.push(' \n').length, 0, 'so is whitespace');
  t.doesNotThrow(() => d.end());
  t.same(decode(['']), Buffer.alloc(0), 'empty data is no bytes');
});

t.test('base64Length and decodedSize', async (t) => {
  for (const [bytes, chars] of [
    [0, 0],
    [1, 4],
    [2, 4],
    [3, 4],
    [4, 8],
    [5, 8],
    [6, 8],
    [1000, 1336],
  ] as const)
    t.equal(base64Length(bytes), chars, `${bytes} bytes → ${chars} characters`);
  fc.assert(
    fc.property(fc.nat(3000), (n) => {
      const text = Buffer.alloc(n, 7).toString('base64');
      return base64Length(n) === text.length && decodedSize(text.length, text.slice(-2)) === n;
    }),
  );
  t.equal(decodedSize(0, ''), 0);
  t.equal(decodedSize(4, '=='), 1);
  t.equal(decodedSize(4, 'A='), 2);
  t.equal(decodedSize(4, 'AA'), 3);
  t.equal(decodedSize(2, '=='), 0, 'never negative');
  t.ok(decodedSize(10, 'A=') >= 5, 'with whitespace in the count, an upper bound');
});

async function collect(body: AsyncIterable<Buffer>, size: number): Promise<string> {
  let s = '';
  for await (const piece of base64Chunks(body, size)) s += piece;
  return s;
}

/** `bytes` as an async stream of chunks of the given sizes. */
async function* chunks(bytes: Buffer, cut: readonly number[]): AsyncGenerator<Buffer> {
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = Math.max(1, cut[i % cut.length]);
    yield bytes.subarray(off, off + n);
    off += n;
  }
}

t.test('base64Chunks: the same text as Buffer.toString(base64), whatever the chunking (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), sizes, async (bytes, cut) => {
      const b = Buffer.from(bytes);
      return (await collect(chunks(b, cut), b.length)) === b.toString('base64');
    }),
  );
  t.pass('for every content and chunking');
});

t.test('base64Chunks: content longer or shorter than recorded fails with BLOB_UNREADABLE', async (t) => {
  const b = Buffer.from('stored content of 25 bytes');
  for (const [size, what] of [
    [b.length - 1, 'longer than recorded'],
    [b.length + 1, 'shorter than recorded'],
    [0, 'anything where nothing was recorded'],
  ] as const) {
    for (const cut of [[b.length], [1], [4, 7]]) {
      await t.rejects(collect(chunks(b, cut), size), { code: 'BLOB_UNREADABLE' }, `${what}, chunks [${cut.join(',')}]`);
    }
  }
  // Too long is noticed as the extra byte arrives: nothing past the recorded size is encoded.
  const seen: string[] = [];
  await t.rejects(
    (async () => {
      for await (const piece of base64Chunks(chunks(Buffer.alloc(7, 1), [6, 1]), 6)) seen.push(piece);
    })(),
    { code: 'BLOB_UNREADABLE' },
  );
  t.same(seen, [Buffer.alloc(6, 1).toString('base64')], 'only the recorded six bytes were encoded, not the seventh');
  t.equal(await collect(chunks(Buffer.alloc(0), [1]), 0), '', 'empty content, recorded empty');
});

t.test('Base64Encode: a byte stream encoded on the fly equals the whole encoded at once (property)', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), sizes, async (bytes, cut) => {
      const b = Buffer.from(bytes);
      let out = '';
      await pipeline(Readable.from(chunks(b, cut)), new Base64Encode(), async (source: AsyncIterable<Buffer>) => {
        for await (const piece of source) out += piece.toString('latin1');
      });
      return out === b.toString('base64');
    }),
  );
  t.pass('for every content and chunking');
});
