import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * CRC-32 (the zlib polynomial) of `buf`, continuing from `previous`. Every read of a plain blob is
 * checked with it (storage/chunks.ts), and a download is CPU-bound, so its speed is the download's:
 * `@node-rs/crc32` (carry-less multiplication, prebuilt for Linux, macOS and Windows) runs at
 * about 25 GB/s on the bench host against 5 GB/s for zlib's. Both compute the same value, so
 * records written with either verify with the other; zlib is the fallback where no prebuilt
 * binary loads (an unusual platform), never a different format.
 */
export type Crc32 = (buf: Uint8Array, previous?: number) => number;

/** Exported for the test of the fallback; `req` loads the native module. */
export function loadCrc32(req: (id: string) => unknown = createRequire(import.meta.url)): {
  readonly crc32: Crc32;
  readonly impl: 'native' | 'zlib';
} {
  try {
    const native = req('@node-rs/crc32') as { crc32: (b: Uint8Array, p?: number) => number };
    return { crc32: (b, p) => native.crc32(b, p ?? 0), impl: 'native' };
  } catch {
    return { crc32: (b, p) => zlibCrc32(b, p ?? 0), impl: 'zlib' };
  }
}

const loaded = loadCrc32();
export const crc32: Crc32 = loaded.crc32;
/** Which implementation loaded (logged at start, so a slow fallback is visible). */
export const crc32Impl = loaded.impl;
