import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { FhirAuditPoster } from '../../src/audit/fhir-poster.js';
import { LineQueue } from '../../src/audit/line-queue.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { AuditTrail } from '../../src/audit/trail.js';
import { buildConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors/catalogue.js';
import { createLogger } from '../../src/logging/logger.js';
import { LogSink } from '../helpers/gateway.js';
import { eventually } from '../helpers/poll.js';

/** A destination that takes `room` lines, then says it is full until drained. */
class SlowSink extends EventEmitter {
  readonly got: string[] = [];
  constructor(private room: number) {
    super();
  }
  write(line: string): boolean {
    this.got.push(line);
    return --this.room > 0;
  }
  drain(room: number): void {
    this.room = room;
    this.emit('drain');
  }
}

const record = (n: number): AuditRecord => ({
  audit: 1,
  time: new Date(0).toISOString(),
  reqId: `r${n}`,
  action: 'read',
  outcome: 'success',
  who: { sub: 'u' },
  what: { resourceType: 'Binary', id: String(n), blobs: [] },
});

t.test('a full destination: lines wait up to the bound, the rest are dropped and counted, none reordered', async (t) => {
  const sink = new SlowSink(2);
  const q = new LineQueue(sink, 3);
  for (let i = 0; i < 10; i++) q.push(`${i}\n`);
  t.same(sink.got, ['0\n', '1\n'], 'written until full');
  t.equal(q.pending, 3);
  t.equal(q.dropped, 5);
  sink.drain(100);
  t.same(sink.got, ['0\n', '1\n', '2\n', '3\n', '4\n'], 'the waiting lines, in order');
  q.push('10\n');
  t.equal(sink.got.at(-1), '10\n');
  t.same([q.written, q.dropped, q.pending], [6, 5, 0]);
});

t.test('a failed destination takes nothing more; shutdown waits a bounded time for a slow one', async (t) => {
  const sink = new SlowSink(1);
  const q = new LineQueue(sink, 10);
  q.push('a\n');
  q.push('b\n');
  q.push('c\n');
  t.equal(q.pending, 2);
  q.fail();
  q.push('d\n');
  t.same([q.written, q.pending, q.dropped], [1, 0, 3], 'the waiting lines and the new one dropped');
  await q.drained(10);

  const slow = new SlowSink(1);
  const r = new LineQueue(slow, 10);
  r.push('1\n');
  r.push('2\n');
  const started = Date.now();
  await r.drained(50);
  t.ok(Date.now() - started < 1000, 'bounded');
  t.same([r.pending, r.dropped], [0, 1], 'what could not be written in time is counted as dropped');

  const drains = new SlowSink(1);
  const d = new LineQueue(drains, 10);
  d.push('x\n');
  d.push('y\n');
  setTimeout(() => drains.drain(10), 10);
  await d.drained(5000);
  t.same([d.dropped, drains.got], [0, ['x\n', 'y\n']], 'written once the destination drained');
});

t.test('the trail logs how many records it dropped, once per report', async (t) => {
  const logs = new LogSink();
  const sink = new SlowSink(1);
  const config = buildConfig(
    {
      upstream: { url: 'http://127.0.0.1:1/fhir' },
      auth: { jwksUri: 'http://127.0.0.1:1/j', issuers: ['t'], audiences: ['t'] },
      audit: { queueRecords: 2 },
    },
    'test',
    '/tmp',
  );
  const trail = new AuditTrail({ audit: config.audit, upstream: config.upstream, stdout: sink, log: createLogger('info', logs), env: {} });
  for (let i = 0; i < 6; i++) trail.record(record(i));
  t.match(trail.stats(), { written: 1, pending: 2, dropped: 3 });
  trail.reportDrops();
  trail.reportDrops();
  const warned = logs.lines.filter((l) => l['msg'] === 'audit records dropped: the audit destination is not keeping up');
  t.same(
    warned.map((l) => [l['dropped'], l['total']]),
    [[3, 3]],
    'one warning with the count',
  );
  t.notOk(logs.raw.join('').includes('"reqId":"r'), 'the dropped records themselves are not logged');
  await trail.close();
});

t.test('an audit file that cannot be opened stops the gateway at start; one that can is owner-only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fbg-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = (file: string) =>
    buildConfig(
      {
        upstream: { url: 'http://127.0.0.1:1/fhir' },
        auth: { jwksUri: 'http://127.0.0.1:1/j', issuers: ['t'], audiences: ['t'] },
        audit: { destination: 'file', file },
      },
      'test',
      '/tmp',
    );
  const deps = (file: string) => ({
    audit: config(file).audit,
    upstream: config(file).upstream,
    stdout: new SlowSink(9),
    log: createLogger('info', new LogSink()),
    env: {},
  });
  t.throws(() => new AuditTrail(deps(join(dir, 'missing', 'audit.jsonl'))), ConfigError);
  const file = join(dir, 'audit.jsonl');
  const trail = new AuditTrail(deps(file));
  trail.record(record(1));
  await trail.close();
  const { statSync } = await import('node:fs');
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.match(JSON.parse(readFileSync(file, 'utf8')), { reqId: 'r1' });
  t.throws(
    () =>
      buildConfig(
        {
          upstream: { url: 'http://x/' },
          auth: { jwksUri: 'http://x/j', issuers: ['t'], audiences: ['t'] },
          audit: { destination: 'file' },
        },
        'test',
        '/tmp',
      ),
    /audit\/file: is required/,
  );
});

t.test('AuditEvents: batched, one Bundle in flight; a refused or unreachable FHIR server drops the batch, counted', async (t) => {
  const bodies: { entry: { resource: { resourceType: string } }[]; type: string }[] = [];
  let status = 200;
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      bodies.push(JSON.parse(text) as (typeof bodies)[number]);
      t.equal(req.headers.authorization, 'Bearer audit-token');
      t.equal(req.headers.prefer, 'return=minimal', 'entries answered without the resource: a batch-response stays small');
      const entries = bodies.at(-1)!.entry.map(() => ({ response: { status: '201 Created' } }));
      res
        .writeHead(status, { 'content-type': 'application/fhir+json' })
        .end(JSON.stringify({ resourceType: 'Bundle', type: 'batch-response', entry: entries }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fhir`;
  const failures: [number, string][] = [];
  const poster = new FhirAuditPoster({
    url,
    bearerToken: 'audit-token',
    batchSize: 2,
    flushMs: 20,
    queueRecords: 4,
    timeoutMs: 2000,
    rejectUnauthorized: true,
    observer: 'test',
    onFailure: (n, why) => failures.push([n, why]),
  });
  for (let i = 0; i < 3; i++) poster.push(record(i));
  await eventually(() => poster.posted === 3, 'three posted');
  t.same(
    bodies.map((b) => [b.type, b.entry.length]),
    [
      ['batch', 2],
      ['batch', 1],
    ],
    'a full batch at once, the rest after flushMs',
  );
  t.ok(bodies.flatMap((b) => b.entry).every((e) => e.resource.resourceType === 'AuditEvent'));

  status = 500;
  poster.push(record(9));
  await eventually(() => failures.length === 1, 'a refused batch');
  t.same(failures, [[1, 'the FHIR server answered 500']]);
  for (let i = 0; i < 10; i++) poster.push(record(i));
  t.ok(poster.dropped >= 1 + 6, 'past the queue bound: dropped');
  status = 200;
  await poster.flush(2000);
  const afterClose = poster.posted;
  poster.push(record(99));
  await new Promise((r) => setTimeout(r, 60));
  t.equal(poster.posted, afterClose, 'nothing is posted after the flush on shutdown');

  const down = new FhirAuditPoster({
    url: 'http://127.0.0.1:1/fhir',
    batchSize: 5,
    flushMs: 10,
    queueRecords: 10,
    timeoutMs: 500,
    rejectUnauthorized: true,
    observer: 'test',
    onFailure: (n, why) => failures.push([n, why]),
  });
  down.push(record(1));
  await down.flush(2000);
  t.equal(down.dropped, 1, 'unreachable: dropped');
  t.match(failures.at(-1), [1, /ECONNREFUSED/]);
});

t.test('a batch-response is judged entry by entry; an answer that is not one loses the whole batch', async (t) => {
  const { refusedEntries } = await import('../../src/audit/fhir-poster.js');
  const answer = (statuses: string[], type = 'batch-response') =>
    Buffer.from(JSON.stringify({ resourceType: 'Bundle', type, entry: statuses.map((status) => ({ response: { status } })) }));
  t.equal(refusedEntries(answer(['201 Created', '201']), 2), 0);
  t.equal(refusedEntries(answer(['201 Created', '403 Forbidden', '422']), 3), 2);
  t.equal(refusedEntries(answer(['201']), 2), 2, 'fewer entries than sent: none can be believed');
  t.equal(refusedEntries(answer(['201'], 'transaction-response'), 1), 1);
  t.equal(refusedEntries(Buffer.from('{"resourceType":"OperationOutcome"}'), 4), 4);
  t.equal(refusedEntries(Buffer.from('not json'), 3), 3);
  t.equal(refusedEntries(Buffer.alloc(0), 5), 5, 'an answer too large to read');
});
