// Attack 13: ways a blob leaves the store earlier than its retention class says.
import { Readable } from 'node:stream';
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { blobExtension } from '../../src/fhir/blob-reference.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { createDocument, editRecord, hoursAgo, serve, sweepAt, sweepOptions, tempDir, updateDocument } from '../helpers/lifecycle.js';
import { defaultRetention, midHour } from '../helpers/retention.js';

const DISCHARGE = { coding: [{ system: 'http://loinc.org', code: '34133-9' }] };
const PROGRESS = { coding: [{ system: 'http://loinc.org', code: '11506-3' }] };

t.test('re-categorising a document does not shorten the retention of the content its earlier version held', async (t) => {
  const classes = [
    { name: 'discharge-summaries', keepDays: 2557, resourceTypes: ['DocumentReference'], categories: ['http://loinc.org|34133-9'] },
  ];
  const s = await stack(t, { retention: { classes } });
  const retention = defaultRetention({ classes });
  const doc = await createDocument(s, { category: [DISCHARGE] });
  // Version 2: other content, and filed as a progress note.
  await updateDocument(t, s, doc.id, {
    category: [PROGRESS],
    content: [{ attachment: { contentType: 'application/pdf', url: 'http://example.org/elsewhere.pdf' } }],
  });
  const opts = sweepOptions(t, s.gw.blobDir, s.up.url, { retention });
  const report = await sweepAt(opts, midHour(2 * 24));
  t.match(report.unlinked, [{ id: doc.blob, retention: 'discharge-summaries' }], 'the class of the version that held it');
  // 30 days on, the discharge summary's PDF (still read by vread of version 1) must still be there.
  await sweepAt(opts, midHour(30 * 24));
  t.ok(await opts.store.head(doc.blob), 'kept for its class, not the 7 days of "unlinked"');
});

t.test('a pending blob of a document created and then deleted (its version 1 still in history) is not deleted at once', async (t) => {
  // A HAPI-like upstream: a deleted resource is gone from searches, its history stays (vread of
  // version 1 still answers, and through the gateway would still read the content).
  const dir = tempDir(t, 'fbg-a13-del-');
  const store = new FilesystemBlobStore({ directory: dir });
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  editRecord(dir, info.id, { createdAt: hoursAgo(2) });
  const v1 = {
    resourceType: 'DocumentReference',
    id: 'gone',
    meta: { versionId: '1' },
    status: 'current',
    category: [DISCHARGE],
    content: [
      {
        attachment: {
          contentType: 'application/pdf',
          _data: { extension: [blobExtension({ id: info.id, sha256: info.sha256 })] },
        },
      },
    ],
  };
  const bundle = (type: string, entry: unknown[]) => JSON.stringify({ resourceType: 'Bundle', type, link: [], entry });
  const base = await serve(
    t,
    (req, res): void => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('content-type', 'application/fhir+json');
      if (url.pathname === '/fhir/DocumentReference') {
        res.end(bundle('searchset', []));
        return;
      }
      if (url.pathname === '/fhir/DocumentReference/_history' || url.pathname === '/fhir/DocumentReference/gone/_history') {
        res.end(bundle('history', [{ request: { method: 'DELETE', url: 'DocumentReference/gone' } }, { resource: v1 }]));
        return;
      }
      if (url.pathname === '/fhir/DocumentReference/gone/_history/1') {
        res.end(JSON.stringify(v1));
        return;
      }
      res.statusCode = url.pathname === '/fhir/DocumentReference/gone' ? 410 : 404;
      res.end('{"resourceType":"OperationOutcome","issue":[]}');
    },
    '/fhir',
  );
  const report = await sweep(sweepOptions(t, store, base));
  t.same(report.deleted, [], 'version 1 of DocumentReference/gone refers to it: not deleted');
  t.ok(await store.head(info.id), 'kept (linked, then unlinked for clinical-documents, as a linked blob of a deleted document is)');
});
