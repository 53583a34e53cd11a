import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { SweepSchedule } from '../../src/binary/sweep-schedule.js';
import { buildConfig } from '../../src/config/load.js';
import type { GatewayConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/logging/logger.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { LogSink } from '../helpers/gateway.js';
import { editRecord, hoursAgo, knowsNothing, recordPath, tempDir } from '../helpers/lifecycle.js';
import { eventually } from '../helpers/poll.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const config = (schedule: boolean, spoolDir: string): GatewayConfig => {
  const c = buildConfig(
    {
      upstream: { url: 'http://127.0.0.1:1/fhir' },
      auth: { jwksUri: 'http://127.0.0.1:1/jwks', issuers: ['t'], audiences: ['t'] },
      retention: { schedule },
    },
    'test',
    '/tmp',
  );
  return { ...c, server: { ...c.server, spoolDir } };
};

t.test('the gateway sweeps on its schedule, only while the configuration says so, and logs what it did', async (t) => {
  const dir = tempDir(t, 'fbg-schedule-');
  const store = new FilesystemBlobStore({ directory: join(dir, 'blobs') });
  const info = await store.put(Readable.from([Buffer.from('left pending')]), { contentType: 'text/plain', intent: 'Binary' });
  editRecord(join(dir, 'blobs'), info.id, { createdAt: hoursAgo(2) });

  const sink = new LogSink();
  const log = createLogger('info', sink);
  let current = config(false, dir);
  const upstream = knowsNothing();
  const schedule = new SweepSchedule({
    store,
    upstream,
    config: () => current,
    log,
    delayMs: () => 5,
    now: () => midHour(),
  });
  schedule.start();
  await new Promise((r) => setTimeout(r, 60));
  t.equal(upstream.asked, 0, 'schedule off: no sweep');
  t.ok(await store.head(info.id));

  current = config(true, dir);
  await eventually(() => upstream.asked > 0 && sink.lines.some((l) => l['msg'] === 'retention sweep done'), 'a scheduled sweep');
  await schedule.stop();
  t.equal(await store.head(info.id), undefined, 'the pending blob no resource refers to is gone');
  const done = sink.lines.find((l) => l['msg'] === 'retention sweep done')!;
  t.match(done, { sweep: { claimed: true, deleted: 1, kept: 0 } }, 'counts, not ids');
  t.notOk(JSON.stringify(sink.lines).includes(info.id), 'no blob id in the log');
});

t.test('a failed sweep is logged and the next period tries again', async (t) => {
  const dir = tempDir(t, 'fbg-schedule-');
  const store = new FilesystemBlobStore({ directory: join(dir, 'blobs') });
  let calls = 0;
  const broken = new Proxy(store, {
    get: (target, key) =>
      key === 'claim'
        ? () => {
            calls++;
            return Promise.reject(new Error('store down'));
          }
        : (target as unknown as Record<string | symbol, unknown>)[key],
  });
  const sink = new LogSink();
  const schedule = new SweepSchedule({
    store: broken,
    upstream: { findReference: async () => undefined, currentReference: () => Promise.reject(new Error('no')) },
    config: () => config(true, dir),
    log: createLogger('info', sink),
    delayMs: () => 5,
  });
  schedule.start();
  await eventually(() => calls >= 2, 'two attempts');
  await schedule.stop();
  t.ok(sink.lines.some((l) => l['msg'] === 'retention sweep failed; the next period tries again' && l['level'] === 'error'));
});

t.test('a blob changed while the sweep asks the upstream is left alone; one the store refuses does not stop the sweep', async (t) => {
  const { sweep } = await import('../../src/binary/sweeper.js');
  const dir = tempDir(t, 'fbg-race-');
  const store = new FilesystemBlobStore({ directory: join(dir, 'blobs') });
  const age = (id: string) => editRecord(join(dir, 'blobs'), id, { updatedAt: hoursAgo(48) });
  const a = await store.put(Readable.from([Buffer.from('a')]), { contentType: 'text/plain', state: 'linked', owner: 'Binary/a' });
  const b = await store.put(Readable.from([Buffer.from('b')]), { contentType: 'text/plain', state: 'linked', owner: 'Binary/b' });
  age(a.id);
  age(b.id);
  const report = await sweep({
    store,
    upstream: {
      findReference: async () => undefined,
      currentReference: async (owner) => {
        // An operator quarantines one meanwhile; the other's record goes bad.
        if (owner === 'Binary/a') await store.setMeta(a.id, { state: 'quarantined' });
        else writeFileSync(recordPath(join(dir, 'blobs'), b.id), '{');
        return { referenced: false, categories: [] };
      },
    },
    spoolDir: join(dir, 'none'),
    retention: defaultRetention(),
    dryRun: false,
    holder: 'test',
    now: () => midHour(),
  });
  t.same(report.unlinked, [], 'nothing unlinked');
  t.match(await store.head(a.id), { state: 'quarantined' }, 'the quarantine stands');
  t.same(report.kept.map((k) => k.id).sort(), [a.id, b.id].sort(), 'both kept, with why');
  t.ok(report.kept.some((k) => /changed while the sweep asked/.test(k.why)));
  t.ok(report.kept.some((k) => /store refused the change/.test(k.why)));
});
