// One `Range: bytes=…` against a known size (RFC 9110 §14.2) and If-None-Match's weak comparison.
import t from 'tap';
import fc from 'fast-check';
import { etagMatches, parseRange } from '../../src/lib/range.js';

type Want = { start: number; end: number } | 'unsatisfiable' | undefined;

t.test('parseRange: single ranges resolved against the size', async (t) => {
  const cases: [header: string | undefined, size: number, want: Want, note: string][] = [
    [undefined, 100, undefined, 'no Range: the whole content'],
    ['bytes=0-9', 100, { start: 0, end: 9 }, 'first ten bytes'],
    ['bytes=10-19', 100, { start: 10, end: 19 }, 'a middle piece'],
    ['bytes=0-0', 100, { start: 0, end: 0 }, 'one byte'],
    ['bytes=99-99', 100, { start: 99, end: 99 }, 'the last byte'],
    ['bytes=90-', 100, { start: 90, end: 99 }, 'open-ended'],
    ['bytes=0-', 100, { start: 0, end: 99 }, 'open-ended from 0'],
    ['bytes=90-1000', 100, { start: 90, end: 99 }, 'an end past the content is clamped'],
    ['bytes=-10', 100, { start: 90, end: 99 }, 'suffix: the last ten bytes'],
    ['bytes=-100', 100, { start: 0, end: 99 }, 'suffix of exactly the size'],
    ['bytes=-1000', 100, { start: 0, end: 99 }, 'a suffix longer than the content is all of it'],
    ['  bytes=5-6  ', 100, { start: 5, end: 6 }, 'surrounding whitespace'],
    ['bytes=100-', 100, 'unsatisfiable', 'starts at the end'],
    ['bytes=100-200', 100, 'unsatisfiable', 'starts past the end'],
    ['bytes=-0', 100, 'unsatisfiable', 'an empty suffix'],
  ];
  for (const [header, size, want, note] of cases) t.same(parseRange(header, size), want, `${String(header)} of ${size}: ${note}`);
});

t.test('parseRange: zero-size content satisfies no range', async (t) => {
  for (const header of ['bytes=0-', 'bytes=0-0', 'bytes=-1', 'bytes=-0', 'bytes=5-10'])
    t.equal(parseRange(header, 0), 'unsatisfiable', header);
  t.equal(parseRange(undefined, 0), undefined, 'without Range the empty content is simply sent');
});

t.test('parseRange: several ranges, other units and malformed headers are ignored (the whole content is sent)', async (t) => {
  for (const header of [
    'bytes=0-1,5-6', // multipart/byteranges is not offered
    'bytes=0-1, 5-6',
    'bytes=-5,0-1',
    'items=0-1',
    'bytes 0-1',
    'bytes=',
    'bytes=-',
    'bytes=a-b',
    'bytes=1-a',
    'bytes=0x10-20',
    'bytes=1.5-2',
    'bytes=+1-2',
    'bytes=--1',
    'bytes=5-3', // last before first
    'bytes= 0-1',
    'bytes=0 -1',
    '',
    'bytes=99999999999999999999-', // not a safe integer
  ])
    t.equal(parseRange(header, 100), undefined, JSON.stringify(header));
});

t.test('parseRange: a resolved range always lies inside the content (property)', async (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10_000 }),
      fc.option(fc.nat(20_000), { nil: undefined }),
      fc.option(fc.nat(20_000), { nil: undefined }),
      (size, a, b) => {
        const header = `bytes=${a ?? ''}-${b ?? ''}`;
        const r = parseRange(header, size);
        if (r === undefined || r === 'unsatisfiable') {
          // Unsatisfiable only when nothing of the content could be named; ignored only when malformed.
          if (r === undefined) return (a === undefined && b === undefined) || (a !== undefined && b !== undefined && b < a);
          return size === 0 || (a !== undefined && a >= size) || (a === undefined && b === 0);
        }
        return 0 <= r.start && r.start <= r.end && r.end < size && (a === undefined || r.start === a);
      },
    ),
  );
  t.pass('held for every size and pair of bounds');
});

t.test('etagMatches: weak comparison, lists and *', async (t) => {
  const cases: [ifNoneMatch: string | undefined, etag: string, match: boolean][] = [
    [undefined, 'W/"1"', false],
    ['', 'W/"1"', false],
    ['W/"1"', 'W/"1"', true],
    ['"1"', 'W/"1"', true], // weak comparison: W/ does not matter
    ['W/"1"', '"1"', true],
    ['"1"', '"1"', true],
    ['W/"2"', 'W/"1"', false],
    ['"10"', 'W/"1"', false],
    ['"1"', 'W/"10"', false],
    ['*', 'W/"1"', true],
    [' * ', 'W/"1"', true],
    ['W/"3", W/"1"', 'W/"1"', true],
    ['W/"3",W/"1"', 'W/"1"', true],
    ['W/"3", W/"4"', 'W/"1"', false],
    ['W/"3", *', 'W/"1"', true],
    ['  W/"1"  ', 'W/"1"', true],
    ['1', 'W/"1"', false], // unquoted is not the same tag
  ];
  for (const [inm, etag, match] of cases) t.equal(etagMatches(inm, etag), match, `If-None-Match ${JSON.stringify(inm)} vs ${etag}`);
});
