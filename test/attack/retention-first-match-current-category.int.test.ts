// Attack 13b: an unlinked blob's retention class is to come from the versions that referred to it
// ("what it was filed as, not what the resource became"). The sweeper unions those categories with
// the *current* version's, then takes the FIRST class that matches: a document re-filed under a
// category whose class is listed first and is shorter sheds the long class of the version that
// held the content — the comment in pending-lookup.ts ("the union keeps the longest class") is
// not what retentionClass() (first match wins) does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const DISCHARGE = { coding: [{ system: 'http://loinc.org', code: '34133-9' }] };
const PROGRESS = { coding: [{ system: 'http://loinc.org', code: '11506-3' }] };

t.test("re-filing a discharge summary under a class listed first does not shorten its PDF's retention", async (t) => {
  // A specific, short class listed before the long one (first match wins, so specific ones go first).
  const classes = [
    { name: 'progress-notes', keepDays: 30, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|11506-3'] },
    { name: 'discharge-summaries', keepDays: 2557, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9'] },
  ];
  const s = await stack(t, { retention: { classes } });
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      category: [DISCHARGE],
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const blob = findBlobRef(held.content[0].attachment._data.extension)!.id;
  // Version 2: other content, re-filed as a progress note. Version 1 (vread) still reads the PDF.
  const upd = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      id,
      status: 'current',
      category: [PROGRESS],
      content: [{ attachment: { contentType: 'text/plain', url: 'http://example.org/elsewhere.txt' } }],
    }),
  });
  t.equal(upd.status, 200);
  await upd.arrayBuffer();

  const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
  const spool = mkdtempSync(join(tmpdir(), 'fbg-a13b-spool-'));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const run = (at: Date) =>
    sweep({
      store,
      upstream: new HttpPendingLookup({ base: s.up.url, timeoutMs: 5000, rejectUnauthorized: true }),
      spoolDir: spool,
      retention: defaultRetention({ classes }),
      dryRun: false,
      holder: 'attack-13b',
      now: () => at,
    });
  const report = await run(midHour(2 * 24));
  t.match(report.unlinked, [{ id: blob }], 'unlinked');
  t.equal(report.unlinked[0]?.retention, 'discharge-summaries', 'the class of the version that held it, not of what it became');
  await run(midHour(60 * 24));
  t.ok(await store.head(blob), "60 days on, the discharge summary's PDF (vread of version 1) is still kept");
});
