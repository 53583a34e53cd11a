// Fixed: one placement rule (externalize.ts `placeable`) for data and links taken back; a reference in a Signature is never served (inflate.ts).
// Attack round 7 of issue 13 (content links). The write side stores attachment data only where
// `$binary-access-read`'s path grammar can name it (externalize.ts `addressable`: element names, at
// most 64 steps), so that a read past the budget never links to content no one can reach. A relink
// is the same write by another means — an own link becomes the blob reference wherever the
// attachment sits in the new body — but it skips that check: the content can be moved (by a
// reader-writer of the resource, with the link and hash it was given) to a place the grammar cannot
// name (here 65 steps: a FHIR-valid singleton chain). The next read past the budget answers a link
// that is refused (400), and the read-modify-update with that link is refused for the whole resource.
// Nor does it apply NOT_ATTACHMENT: the link taken back in a Signature (whose `data` the write side
// never treats as content) puts the blob reference there, and every read inlines the PDF as
// `Signature.data` (past the budget: a link `$binary-access-read` refuses, Signature is not an attachment).
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, sendResource, readLinked } from '../helpers/lifecycle.js';

const BASE = 'http://gateway.test/fhir';

t.test('an own link taken back at a place no link path can name', async (t) => {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  const get = () => readLinked(s, `/DocumentReference/${doc.id}`);
  const body = await get();
  const att = body.content[0].attachment as Record<string, unknown>;
  t.type(att.url, 'string', 'the read answered a link');

  // subject.identifier.assigner.identifier.assigner… (63 singleton steps), then extension[0].valueAttachment.
  const chain = Array.from({ length: 63 }, (_, i) => (i % 2 === 0 ? 'identifier' : 'assigner'));
  let inner: Record<string, unknown> = { extension: [{ url: 'urn:example:scan', valueAttachment: { ...att } }] };
  for (const step of [...chain].reverse()) inner = { [step]: inner };
  body.subject = { display: 'x', ...inner };
  body.content = [{ attachment: { contentType: 'application/pdf', url: 'https://records.example.org/elsewhere.pdf' } }];
  delete body.meta;
  const put = await sendResource(s, 'PUT', `/DocumentReference/${doc.id}`, body);
  const text = await put.text();
  t.comment(`update: ${put.status} ${text.slice(0, 300)}`);
  if (put.status !== 200) {
    t.equal(put.status, 400, 'refused, as data sent at that place is');
    return;
  }
  const after = await get();
  let x: any = after.subject;
  for (const step of chain) x = x[step];
  const link = String(x.extension[0].valueAttachment.url ?? '');
  t.comment(link.slice(0, 200));
  const followed = await fetch(`${s.gw.base}${link.slice(BASE.length)}`, { headers: s.auth });
  const got = Buffer.from(await followed.arrayBuffer());
  t.equal(
    followed.status,
    200,
    `an accepted relink leaves content its link serves (got ${followed.status}: ${got.toString('utf8', 0, 160)})`,
  );
});

t.test('an own link taken back in a Signature', async (t) => {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  const get = async (q = '?_inflate=false') =>
    (await (
      await fetch(`${s.gw.base}/DocumentReference/${doc.id}${q}`, { headers: { ...s.auth, accept: 'application/fhir+json' } })
    ).json()) as Record<string, any>;
  const body = await get();
  const att = body.content[0].attachment;
  body.extension = [
    { url: 'urn:x', valueSignature: { type: [{ code: 'x' }], when: '2020-01-01T00:00:00Z', who: { display: 'x' }, ...att } },
  ];
  body.content = [{ attachment: { contentType: 'application/pdf', url: 'https://records.example.org/x.pdf' } }];
  delete body.meta;
  const put = await sendResource(s, 'PUT', `/DocumentReference/${doc.id}`, body);
  t.comment(`update: ${put.status} ${(await put.text()).slice(0, 200)}`);
  const sig = (await get('')).extension?.[0]?.valueSignature ?? {};
  t.comment(JSON.stringify({ ...sig, data: sig.data ? `${String(sig.data).length} chars` : undefined }).slice(0, 400));
  t.equal(put.status, 400, 'refused: a Signature is not an attachment, no content is taken back into it');
  t.equal(sig.data, undefined, 'no stored content is served as Signature.data');
});
