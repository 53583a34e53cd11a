// The retention sweeper on one store driver, against the real FHIR upstream (issue 13): two sweeps
// at once, one acts (the claim is the store's own exclusive create); a pending blob no resource
// refers to is deleted; a linked blob its resource refers to is never swept; one its resource no
// longer refers to becomes unlinked and is deleted after its class. Each driver's test file calls it.
import { Readable } from 'node:stream';
import type { Test } from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep, type SweepOptions } from '../../src/binary/sweeper.js';
import { buildConfig } from '../../src/config/load.js';
import { createBlobStore } from '../../src/storage/create.js';
import { blobRefOf, createdId, PDF, stack } from './binary-stack.js';
import type { CorruptibleStore } from './integrity-scenario.js';
import { defaultRetention, midHour } from './retention.js';

export function sweepScenario(t: Test, name: string, make: (t: Test) => Promise<Pick<CorruptibleStore, 'storage'>>): void {
  t.test(
    `${name}: one of two concurrent sweeps acts; pending orphans go, referenced blobs stay, unreferenced ones after their class`,
    async (t) => {
      const under = await make(t);
      const s = await stack(t, { storage: under.storage });
      const { storage } = buildConfig(
        {
          upstream: { url: s.up.url },
          auth: { jwksUri: 'http://127.0.0.1:1/j', issuers: ['t'], audiences: ['t'] },
          storage: under.storage,
        },
        'test',
        process.cwd(),
      );
      const store = await createBlobStore(storage);
      const post = async () => {
        const r = await fetch(`${s.gw.base}/Binary`, {
          method: 'POST',
          headers: { ...s.auth, 'content-type': 'application/pdf' },
          body: PDF(70_000),
        });
        await r.arrayBuffer();
        const id = createdId(r);
        return { id, blob: (await blobRefOf(s, id))!.id };
      };
      const kept = await post();
      const dropped = await post();
      const del = await fetch(`${s.gw.base}/Binary/${dropped.id}`, { method: 'DELETE', headers: s.auth });
      await del.arrayBuffer();
      const orphan = (await store.put(Readable.from([PDF(1000)]), { contentType: 'application/pdf', intent: 'Binary' })).id;

      const opts = (holder: string, hoursOn: number): SweepOptions => ({
        store,
        upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
        spoolDir: s.gw.spoolDir,
        retention: defaultRetention(),
        dryRun: false,
        holder,
        now: () => midHour(hoursOn),
      });
      // A day on: the orphan is past its grace, both linked blobs are due their check.
      const [a, b] = await Promise.all([sweep(opts('a', 25)), sweep(opts('b', 25))]);
      t.same([a.claimed, b.claimed].sort(), [false, true], 'one claim, one sweep');
      const r = a.claimed ? a : b;
      t.same(r.deleted, [orphan], 'the pending orphan deleted');
      t.same(
        r.unlinked.map((u) => [u.id, u.retention]),
        [[dropped.blob, 'unlinked']],
        'the deleted Binary’s blob unlinked',
      );
      t.equal(r.checked, 1, 'the referenced one checked');
      t.equal(await store.head(orphan), undefined);
      t.match(await store.head(kept.blob), { state: 'linked' });
      const read = await fetch(`${s.gw.base}/Binary/${kept.id}`, { headers: { ...s.auth, accept: 'application/pdf' } });
      t.equal(read.status, 200, 'the referenced Binary still reads');
      await read.arrayBuffer();

      // Eight days on (a new period): the unlinked blob's class is over.
      const later = await sweep(opts('c', 25 + 8 * 24));
      t.ok(later.claimed);
      t.same(later.deleted, [dropped.blob], 'deleted after its class');
      t.equal(await store.head(dropped.blob), undefined);
      t.match(await store.head(kept.blob), { state: 'linked' }, 'never the referenced one');
      t.same(await store.claims(), [], 'claims dropped');
    },
  );
}
