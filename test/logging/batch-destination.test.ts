import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BatchDestination, type BatchDestinationOptions, type WriteFn } from '../../src/logging/batch-destination.js';

const OPTS = { batchChars: 64, highWaterChars: 256, maxChars: 1024, intervalMs: 10_000 };

function tempFd(t: Test): { fd: number; read: () => string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'batch-dest-'));
  const file = path.join(dir, 'out.log');
  const fd = fs.openSync(file, 'w');
  t.teardown(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { fd, read: () => fs.readFileSync(file, 'utf8') };
}

const flushed = (d: BatchDestination) => new Promise<void>((resolve) => d.flush(() => resolve()));

/** A descriptor played by the test: each write answers what `script` says, the bytes taken are kept. */
function scripted(script: (buf: Buffer, call: number) => { err?: string; take?: number }) {
  const out: Buffer[] = [];
  let calls = 0;
  const write: WriteFn = (_fd, buf, cb) => {
    const step = script(buf, calls++);
    setImmediate(() => {
      if (step.err) return cb(Object.assign(new Error(step.err), { code: step.err }), 0);
      const n = step.take ?? buf.length;
      out.push(Buffer.from(buf.subarray(0, n)));
      cb(null, n);
    });
  };
  return { write, text: () => Buffer.concat(out).toString('utf8'), calls: () => calls };
}

function dest(t: Test, opts: Partial<BatchDestinationOptions> & { fd: number }): BatchDestination {
  const d = new BatchDestination({ ...OPTS, ...opts });
  t.teardown(() => d.end());
  return d;
}

t.test('lines come out whole and in order, across many batches, multi-byte text included', async (t) => {
  const { fd, read } = tempFd(t);
  const d = dest(t, { fd, highWaterChars: 1_000_000, maxChars: 2_000_000 });
  const want: string[] = [];
  for (let i = 0; i < 500; i++) {
    const line = `{"n":${i},"who":"Zoë ${'x'.repeat(i % 37)}"}\n`;
    want.push(line);
    d.write(line);
  }
  await flushed(d);
  t.equal(read(), want.join(''));
});

t.test('nothing is written per line: lines wait for a batch (or the interval)', async (t) => {
  const s = scripted(() => ({}));
  const d = dest(t, { fd: 1, write: s.write, batchChars: 1000, highWaterChars: 2000, maxChars: 4000 });
  for (let i = 0; i < 20; i++) d.write(`line ${i}\n`);
  await new Promise((r) => setImmediate(r));
  t.equal(s.calls(), 0, 'under the batch size: no write yet');
  await flushed(d);
  t.equal(s.calls(), 1, 'one write for all twenty');
  t.equal(s.text().split('\n').length - 1, 20);
});

t.test('a quiet destination writes what waits on its interval', async (t) => {
  const s = scripted(() => ({}));
  const d = dest(t, { fd: 1, write: s.write, batchChars: 1000, intervalMs: 20 });
  d.write('alone\n');
  await new Promise((r) => setTimeout(r, 80));
  t.equal(s.text(), 'alone\n');
});

t.test('flush calls back once the lines before it are out, even while more keep coming', async (t) => {
  const s = scripted(() => ({ take: 7 })); // a slow descriptor: seven bytes a write
  const d = dest(t, { fd: 1, write: s.write });
  d.write('first line\n');
  d.write('second line\n');
  let done = false;
  d.flush(() => (done = true));
  d.write('third line, after the flush\n');
  while (!done) {
    await new Promise((r) => setImmediate(r));
    d.write('more\n'); // a busy gateway never runs empty: the flush must not wait for that
  }
  t.ok(s.text().startsWith('first line\nsecond line\n'), 'everything before the flush is out, partial writes resumed');
});

t.test('flush with nothing waiting calls back at once', async (t) => {
  const d = dest(t, { fd: 1, write: scripted(() => ({})).write });
  await flushed(d);
  t.pass('called back');
});

t.test('EAGAIN (a full non-blocking pipe): the same bytes again, nothing lost or doubled', async (t) => {
  const s = scripted((_buf, call) => (call < 3 ? { err: 'EAGAIN' } : {}));
  const d = dest(t, { fd: 1, write: s.write });
  d.write('a\n');
  d.write('b\n');
  await flushed(d);
  t.equal(s.text(), 'a\nb\n');
  t.equal(s.calls(), 4);
});

t.test('above the high-water mark write says so, and drain comes once there is room', async (t) => {
  let release: (() => void) | undefined;
  const out: string[] = [];
  const write: WriteFn = (_fd, buf, cb) => {
    release = () => {
      out.push(buf.toString());
      cb(null, buf.length);
    };
  };
  const d = dest(t, { fd: 1, write, batchChars: 10, highWaterChars: 100, maxChars: 1000 });
  t.equal(d.write('0123456789ab\n'), true, 'first batch goes out: the write is in flight');
  let answer = true;
  for (let i = 0; i < 10 && answer; i++) answer = d.write('0123456789ab\n');
  t.equal(answer, false, 'full: the caller should wait');
  const drained = new Promise<void>((resolve) => d.once('drain', () => resolve()));
  while (out.join('').split('\n').length < 12) {
    await new Promise((r) => setImmediate(r));
    release?.();
  }
  await drained;
  t.pass('drain emitted');
});

t.test('a blocked output holds a bounded amount: the rest is dropped, counted, and reported when it moves', async (t) => {
  let blocked = true;
  const held: (() => void)[] = [];
  const out: string[] = [];
  const write: WriteFn = (_fd, buf, cb) => {
    const go = () => {
      out.push(buf.toString());
      cb(null, buf.length);
    };
    if (blocked) held.push(go);
    else go();
  };
  const d = dest(t, { fd: 1, write, batchChars: 10, highWaterChars: 50, maxChars: 100 });
  for (let i = 0; i < 40; i++) d.write(`line-${String(i).padStart(3, '0')}\n`); // 9 chars each
  t.ok(d.dropped > 20, `dropped ${d.dropped} of 40`);
  blocked = false;
  for (const go of held.splice(0)) go();
  await flushed(d);
  const text = out.join('');
  t.match(text, /^line-000\n/, 'the oldest lines kept');
  const report = text
    .split('\n')
    .filter(Boolean)
    .find((l) => l.startsWith('{'));
  t.ok(report, 'a report line');
  t.match(JSON.parse(report!), { level: 'warn', dropped: d.dropped, msg: /log lines dropped/ });
});

t.test('EPIPE (nobody reads any more): logging ends quietly, flush still answers, writes never throw', async (t) => {
  const s = scripted(() => ({ err: 'EPIPE' }));
  const d = dest(t, { fd: 1, write: s.write });
  d.write('lost\n');
  await flushed(d);
  t.equal(d.write('after\n'), true);
  await flushed(d);
  t.equal(s.calls(), 1, 'no write after the pipe closed');
});

t.test('another failure loses that batch only; the lines behind it go out', async (t) => {
  const s = scripted((_buf, call) => (call === 0 ? { err: 'EIO' } : {}));
  const d = dest(t, { fd: 1, write: s.write, batchChars: 5 });
  d.write('first\n');
  await new Promise((r) => setImmediate(r));
  d.write('second\n');
  await flushed(d);
  t.equal(d.dropped, 1);
  const lines = s.text().split('\n');
  t.match(JSON.parse(lines[0]), { dropped: 1 }, 'the loss is reported');
  t.equal(lines[1], 'second');
  t.notOk(s.text().includes('first'));
});

t.test('flushSync writes what waits before it returns (process exit: no event loop left)', async (t) => {
  const { fd, read } = tempFd(t);
  const d = dest(t, { fd, batchChars: 10_000, highWaterChars: 20_000, maxChars: 40_000 });
  d.write('one\n');
  d.write('two\n');
  d.flushSync();
  t.equal(read(), 'one\ntwo\n');
  d.flushSync();
  t.equal(read(), 'one\ntwo\n', 'nothing twice');
});

t.test('flushSync retries EAGAIN and resumes a partial write', async (t) => {
  const out: Buffer[] = [];
  let calls = 0;
  const writeSync = (_fd: number, buf: Buffer) => {
    calls++;
    if (calls === 1) throw Object.assign(new Error('again'), { code: 'EAGAIN' });
    const n = Math.min(3, buf.length);
    out.push(Buffer.from(buf.subarray(0, n)));
    return n;
  };
  const d = dest(t, { fd: 1, write: scripted(() => ({})).write, writeSync, batchChars: 1000 });
  d.write('abcdefgh\n');
  d.flushSync();
  t.equal(Buffer.concat(out).toString(), 'abcdefgh\n');
});

t.test('the process exit flushes the gateway stdout destination', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const script = `
    import { stdoutDestination } from ${JSON.stringify(new URL('../../src/logging/logger.ts', import.meta.url).href)};
    const d = stdoutDestination();
    for (let i = 0; i < 3; i++) d.write('exit-line-' + i + '\\n');
    process.exit(0);
  `;
  const r = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  t.equal(r.stdout, 'exit-line-0\nexit-line-1\nexit-line-2\n', r.stderr);
});
