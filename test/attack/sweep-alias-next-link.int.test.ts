// Attack 13: the sweeper's pending reconciliation believes a search page whose `next` link it will
// not follow (the upstream names itself by another base — HAPI's server_address, the aliases of
// upstream.url) is the last one, and deletes a blob the CURRENT version of a resource on page 2
// refers to. "None" must only be believed from a scan that really saw every page.
import { Readable } from 'node:stream';
import t from 'tap';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import { PDF } from '../helpers/binary-stack.js';
import { editRecord, hoursAgo, serve, sweepOptions, tempDir } from '../helpers/lifecycle.js';

t.test('a pending blob referred to by a current resource on a second page (next link on an alias base) is not deleted', async (t) => {
  const dir = tempDir(t, 'fbg-a13-alias-');
  const store = new FilesystemBlobStore({ directory: dir });
  // A create whose answer was lost: pending, written for `DocumentReference`, two hours ago.
  const info = await store.put(Readable.from([PDF(5000)]), { contentType: 'application/pdf', intent: 'DocumentReference' });
  editRecord(dir, info.id, { createdAt: hoursAgo(2) });

  // The FHIR server (reached as upstream.url) names itself by its own server_address in its paging links.
  const alias = 'http://fhir.internal.example/fhir';
  const dr = (id: string, blob?: string) => ({
    resourceType: 'DocumentReference',
    id,
    meta: { versionId: '1' },
    status: 'current',
    content: [
      {
        attachment: blob
          ? {
              contentType: 'application/pdf',
              _data: { extension: [{ url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/blob-reference', valueString: blob }] },
            }
          : { url: `http://example.org/${id}.pdf` },
      },
    ],
  });
  const page1 = Array.from({ length: 50 }, (_, i) => ({ resource: dr(`other-${i}`) }));
  const page2 = [{ resource: dr('the-one', info.id) }];
  const base = await serve(
    t,
    (req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('content-type', 'application/fhir+json');
      if (url.pathname === '/fhir/DocumentReference') {
        const second = url.searchParams.get('page') === '2';
        res.end(
          JSON.stringify({
            resourceType: 'Bundle',
            type: 'searchset',
            total: 51,
            link: second ? [] : [{ relation: 'next', url: `${alias}/DocumentReference?page=2&_count=50` }],
            entry: second ? page2 : page1,
          }),
        );
        return;
      }
      if (url.pathname === '/fhir/DocumentReference/the-one') {
        res.end(JSON.stringify(dr('the-one', info.id)));
        return;
      }
      res.statusCode = 404;
      res.end('{"resourceType":"OperationOutcome","issue":[]}');
    },
    '/fhir',
  );

  const report = await sweep(sweepOptions(t, store, base));
  t.same(report.deleted, [], 'nothing deleted: page 2 was never read, so "no resource refers to it" is not known');
  t.ok(await store.head(info.id), 'DocumentReference/the-one (current version) still has its content');
});
