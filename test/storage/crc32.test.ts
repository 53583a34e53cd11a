import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import t from 'tap';
import { crc32, crc32Impl, loadCrc32 } from '../../src/storage/crc32.js';

t.test('the native CRC-32 loads here and computes zlib’s value, whole and piece by piece', async (t) => {
  t.equal(crc32Impl, 'native', 'the prebuilt binary for this platform is installed (package-lock records it)');
  const buf = randomBytes(1024 * 1024 + 17);
  t.equal(crc32(buf), zlibCrc32(buf));
  let piecewise = 0;
  for (let off = 0; off < buf.length; off += 65_537) piecewise = crc32(buf.subarray(off, off + 65_537), piecewise);
  t.equal(piecewise, zlibCrc32(buf), 'continuing from a previous value');
  t.equal(crc32(Buffer.alloc(0)), 0);
});

t.test('without the native module, zlib computes the same values', async (t) => {
  const fallback = loadCrc32(() => {
    throw new Error('Cannot find module');
  });
  t.equal(fallback.impl, 'zlib');
  const buf = randomBytes(300_000);
  t.equal(fallback.crc32(buf), crc32(buf));
  t.equal(fallback.crc32(buf.subarray(1000), fallback.crc32(buf.subarray(0, 1000))), crc32(buf));
});
