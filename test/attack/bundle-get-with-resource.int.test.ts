// FINDING (issue 12, 7): a batch GET (or DELETE, HEAD) entry that carried a `resource` had it
// externalized like a write: its attachment data went into the store and the blob was marked
// linked with no owner, so a read-only token could fill the store and nothing reclaimed it.
// Such an entry is now 400 BAD_BUNDLE naming the entry, while the Bundle is scanned: before
// anything is stored or reaches the upstream.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle } from './helpers.js';

const withAttachment = () => ({
  resourceType: 'DocumentReference',
  status: 'current',
  content: [{ attachment: { contentType: 'application/pdf', data: PDF(200_000).toString('base64') } }],
});

/** Status, code and text of an OperationOutcome answer. */
async function refusal(r: Response): Promise<[number, string | undefined, string | undefined]> {
  const oo = (await r.json()) as { issue: { details: { coding: { code: string }[]; text?: string } }[] };
  return [r.status, oo.issue[0]?.details.coding[0]?.code, oo.issue[0]?.details.text];
}

t.test('a bodyless batch entry carrying a resource is 400 naming the entry, and stores nothing', async (t) => {
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const readOnly = await s.as('user/*.rs');
  const before = s.up.requests.length;
  for (const method of ['GET', 'DELETE', 'HEAD']) {
    for (const type of ['batch', 'transaction']) {
      const r = await bundle(
        s,
        method === 'GET' ? readOnly : s.auth,
        [
          { request: { method: 'GET', url: 'Patient?_count=1' } },
          { request: { method: 'GET', url: 'Patient?_count=1' } },
          { resource: withAttachment(), request: { method, url: 'DocumentReference/doc-1' } },
        ],
        type,
      );
      t.same(
        await refusal(r),
        [
          400,
          'BAD_BUNDLE',
          `The Bundle cannot be authorized entry by entry: entry 2: a ${method} entry must not carry a resource (Bundle.entry[2].resource)`,
        ],
        `${type} ${method} entry`,
      );
      t.same(s.gw.blobFiles(), [], `${type} ${method}: the blob store has no new blob`);
    }
  }
  t.equal(s.up.requests.length, before, 'nothing reached the upstream');
  t.same(s.gw.spoolFiles(), [], 'no spool file left behind');

  // Control: the same resource in a POST entry is a write, and its attachment is stored.
  const write = await bundle(s, s.auth, [{ resource: withAttachment(), request: { method: 'POST', url: 'DocumentReference' } }]);
  t.equal(write.status, 200, 'a POST entry with the same resource is accepted');
  await write.arrayBuffer();
  t.equal(
    s.gw.blobFiles().filter((f) => !f.endsWith('.json')).length,
    1,
    'and its attachment is in the store (so the check above could see one)',
  );
});
