// Attack 13b: an unlinked blob's retention class is to come from the versions that referred to it
// ("what it was filed as, not what the resource became"). The sweeper unions those categories with
// the *current* version's, then takes the FIRST class that matches: a document re-filed under a
// category whose class is listed first and is shorter sheds the long class of the version that
// held the content — the comment in pending-lookup.ts ("the union keeps the longest class") is
// not what retentionClass() (first match wins) does.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, sweepAt, sweepOptions, updateDocument } from '../helpers/lifecycle.js';
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
  const { id, blob } = await createDocument(s, { category: [DISCHARGE] }, t);
  // Version 2: other content, re-filed as a progress note. Version 1 (vread) still reads the PDF.
  await updateDocument(t, s, id, {
    category: [PROGRESS],
    content: [{ attachment: { contentType: 'text/plain', url: 'http://example.org/elsewhere.txt' } }],
  });

  const opts = sweepOptions(t, s.gw.blobDir, s.up.url, { retention: defaultRetention({ classes }) });
  const report = await sweepAt(opts, midHour(2 * 24));
  t.match(report.unlinked, [{ id: blob }], 'unlinked');
  t.equal(report.unlinked[0]?.retention, 'discharge-summaries', 'the class of the version that held it, not of what it became');
  await sweepAt(opts, midHour(60 * 24));
  t.ok(await opts.store.head(blob), "60 days on, the discharge summary's PDF (vread of version 1) is still kept");
});
