import t, { type Test } from 'tap';
import { IdleWatch, type IdleMark } from '../../src/upstream/idle-watch.js';
import { eventually } from '../helpers/poll.js';

interface Item extends IdleMark {
  name: string;
  progress: number | undefined;
}

function setup(timeoutMs = 100) {
  const clock = { ms: 0 };
  const fired: string[] = [];
  const watch = new IdleWatch<Item>({ timeoutMs, progressOf: (i) => i.progress, onIdle: (i) => fired.push(i.name), now: () => clock.ms });
  t.teardown(() => watch.close());
  const item = (name: string, progress: number | undefined): Item => ({
    name,
    progress,
    idleProgress: 0,
    idleSince: -1,
    idlePrev: undefined,
    idleNext: undefined,
  });
  const at = (ms: number) => {
    clock.ms = ms;
    watch.sweep();
  };
  /** The item was last seen moving at `from`: not timed out one ms before the timeout, timed out at it. */
  const firesAfterTimeout = (t: Test, name: string, from: number, msg: string) => {
    at(from + timeoutMs - 1);
    t.notOk(fired.includes(name), `${msg}: not at ${timeoutMs - 1} ms`);
    at(from + timeoutMs);
    t.ok(fired.includes(name), `${msg}: at ${timeoutMs} ms`);
  };
  return { watch, fired, item, at, firesAfterTimeout };
}

t.test('an item that makes no progress is timed out once, after the timeout and never before', async (t) => {
  const { watch, fired, item, at, firesAfterTimeout } = setup(100);
  watch.add(item('a', 0));
  at(0);
  firesAfterTimeout(t, 'a', 0, 'silent from the start');
  at(500);
  t.same(fired, ['a'], 'once: no longer watched');
  t.equal(watch.size, 0);
});

t.test('progress restarts the clock: a slow but steady item is never timed out', async (t) => {
  const { watch, fired, item, at } = setup(100);
  const a = item('a', 0);
  watch.add(a);
  for (let ms = 0; ms <= 1_000; ms += 60) {
    a.progress = ms;
    at(ms);
  }
  t.same(fired, [], 'a byte every 60 ms with a 100 ms timeout');
  at(1_000 + 60 + 100);
  t.same(fired, ['a'], 'then silence: timed out');
});

t.test('the clock starts at the first sweep that sees the item: a sweep period late at most, never early', async (t) => {
  const { watch, item, at, firesAfterTimeout } = setup(100);
  at(0);
  watch.add(item('a', 5));
  at(50);
  firesAfterTimeout(t, 'a', 50, 'counted from the sweep at 50 ms that first saw it');
});

t.test(
  'an item not subject to the timeout (undefined progress) is never timed out, and its clock restarts when it becomes subject',
  async (t) => {
    const { watch, fired, item, at, firesAfterTimeout } = setup(100);
    const a = item('a', undefined);
    watch.add(a);
    at(0);
    at(1_000);
    t.same(fired, [], 'not timed while undefined (the request still uploading)');
    a.progress = 7;
    at(1_050);
    at(1_149);
    t.same(fired, [], 'the clock started when it became subject, not when it was added');
    a.progress = undefined;
    at(1_200);
    a.progress = 7;
    at(1_250);
    firesAfterTimeout(t, 'a', 1_250, 'undefined in between (the answer was all in) restarts it again');
  },
);

t.test('deleted items are never timed out; others are unaffected', async (t) => {
  const { watch, fired, item, at } = setup(100);
  const a = item('a', 0);
  const b = item('b', 0);
  watch.add(a);
  watch.add(b);
  at(0);
  watch.delete(a);
  at(200);
  t.same(fired, ['b']);
  t.equal(watch.size, 0);
});

t.test('the sweep runs by itself, on a timer', async (t) => {
  const fired: string[] = [];
  const watch = new IdleWatch<Item>({ timeoutMs: 40, progressOf: (i) => i.progress, onIdle: (i) => fired.push(i.name) });
  t.teardown(() => watch.close());
  watch.add({ name: 'a', progress: 1, idleProgress: 0, idleSince: -1, idlePrev: undefined, idleNext: undefined });
  const started = performance.now();
  await eventually(() => fired.length > 0, 'the timer-driven sweep timing the item out');
  t.ok(performance.now() - started >= 40, 'not before the timeout');
  t.same(fired, ['a'], 'once, the item it was given');
  t.equal(watch.size, 0, 'no longer watched');
});

t.test(
  'bookkeeping: adding twice watches once, deleting an unwatched item is a no-op, an onIdle that stops watching other items does not derail the sweep',
  async (t) => {
    const clock = { ms: 0 };
    const fired: string[] = [];
    const items: Item[] = ['a', 'b', 'c', 'd'].map((name) => ({
      name,
      progress: 0,
      idleProgress: 0,
      idleSince: -1,
      idlePrev: undefined,
      idleNext: undefined,
    }));
    const [a, b, c, d] = items as [Item, Item, Item, Item];
    const watch: IdleWatch<Item> = new IdleWatch<Item>({
      timeoutMs: 100,
      progressOf: (i) => i.progress,
      // Failing one exchange can end others (their clients close): here a's timeout removes b and c.
      onIdle: (i) => {
        fired.push(i.name);
        if (i === a) {
          watch.delete(b);
          watch.delete(c);
        }
      },
      now: () => clock.ms,
    });
    t.teardown(() => watch.close());
    watch.add(a);
    watch.add(a);
    t.equal(watch.size, 1, 'added twice, watched once');
    watch.delete(b);
    t.equal(watch.size, 1, 'deleting an unwatched item changes nothing');
    for (const i of [b, c, d]) watch.add(i);
    watch.sweep();
    clock.ms = 100;
    watch.sweep();
    t.same(fired, ['a', 'd'], 'b and c were removed by a timing out; d, after them, still swept');
    t.equal(watch.size, 0);
    watch.add(b);
    watch.close();
    t.equal(watch.size, 0, 'close stops watching everything');
    clock.ms = 1_000;
    watch.sweep();
    t.same(fired, ['a', 'd']);
  },
);

t.test('an item whose progress is null is over: unlinked at the next sweep, never timed out', async (t) => {
  const { watch, fired, item, at } = setup(100);
  const a = item('a', 0);
  const b = item('b', 0);
  watch.add(a);
  watch.add(b);
  at(0);
  a.progress = null as unknown as number;
  at(50);
  t.equal(watch.size, 1, 'a unlinked');
  at(1_000);
  t.same(fired, ['b'], 'only b timed out');
});
