// Serving a local file through reused buffers: exact bytes, ranges, backpressure, an early exit.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t from 'tap';
import { pumpFile } from '../../src/storage/file-pump.js';

const dir = mkdtempSync(join(tmpdir(), 'fbg-pump-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const content = randomBytes(3 * 1024 * 1024 + 123);
const path = join(dir, 'blob');
writeFileSync(path, content);

/** A consumer that copies what it gets, slowly and with a small buffer: buffers must not be reused before it is done with them. */
function slowSink(highWaterMark = 16 * 1024) {
  const parts: Buffer[] = [];
  const sink = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      const copy = Buffer.from(chunk);
      setTimeout(() => {
        parts.push(copy);
        cb();
      }, 1);
    },
  });
  return { sink, bytes: () => Buffer.concat(parts) };
}

t.test('whole file and ranges arrive exactly, through a slow consumer', async (t) => {
  // A large highWaterMark lets writes queue up: a buffer reused before its write completed would show here.
  for (const [start, end, hwm] of [
    [0, content.length - 1, 8 << 20],
    [0, content.length - 1, 16 << 10],
    [1, 262_144, 8 << 20],
    [262_143, 262_144, 16 << 10],
    [content.length - 5, content.length - 1, 16 << 10],
  ] as const) {
    const { sink, bytes } = slowSink(hwm);
    const fh = await open(path, 'r');
    await pumpFile(fh, start, end, sink);
    await new Promise<void>((r) => sink.end(r));
    t.ok(bytes().equals(content.subarray(start, end + 1)), `${start}-${end}, highWaterMark ${hwm}`);
  }
});

t.test('a consumer that goes away stops the copy and the file is closed', async (t) => {
  const { sink } = slowSink();
  const fh = await open(path, 'r');
  const done = pumpFile(fh, 0, content.length - 1, sink);
  setTimeout(() => sink.destroy(), 20);
  await done;
  await t.rejects(fh.stat(), { code: 'EBADF' }, 'file handle closed');
});

t.test('a file shorter than expected is an error, not a short body taken for whole', async (t) => {
  const { sink } = slowSink();
  await t.rejects(pumpFile(await open(path, 'r'), 0, content.length + 10, sink), /shorter than its recorded size/);
});
