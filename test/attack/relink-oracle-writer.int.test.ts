// Attack round 5 of issue 13 (relink surface), a new member of write-answers. A token that may
// write DocumentReference but not read it gets no resource back from its writes. But the relink
// reads the current version for it (with the gateway's own access) and answers by what it finds:
// 409 CONTENT_LINK_UNRESOLVED when there is no stored content at a path, 400 when the `size` or
// `hash` sent beside an own link do not match the content, 200 when they do. Links are
// predictable (`{base}/Type/id/$binary-access-read?path=…`), so the writer learns which
// attachments hold stored content, each one's exact size (guessing `size`: each wrong guess is
// refused and changes nothing), and can confirm a guessed document (its SHA-1 in `hash`) — facts
// about content it may not read.
import t from 'tap';
import { createHash } from 'node:crypto';
import { PDF, stack } from '../helpers/binary-stack.js';
import { createDocument } from '../helpers/lifecycle.js';
import { outcome } from './helpers.js';

t.test('a writer who may not read learns nothing of the content from an own link', async (t) => {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  const writer = await s.as('user/DocumentReference.cu files.write fhir.write');
  const link = (p: string) => `${s.gw.publicBaseUrl}/DocumentReference/${doc.id}/$binary-access-read?path=${encodeURIComponent(p)}`;
  const put = (attachment: Record<string, unknown>) =>
    outcome(
      fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
        method: 'PUT',
        headers: { ...writer, 'content-type': 'application/fhir+json' },
        body: JSON.stringify({ resourceType: 'DocumentReference', id: doc.id, status: 'current', content: [{ attachment }] }),
      }),
    );
  const at0 = link('DocumentReference.content[0].attachment');
  // Each wrong guess is refused and writes nothing: it can be repeated until one is accepted.
  const wrong = await put({ contentType: 'application/pdf', url: at0, size: 70_014 });
  const right = await put({ contentType: 'application/pdf', url: at0, size: 70_015 });
  const hashOf = (b: Buffer) => createHash('sha1').update(b).digest('base64');
  const guessedWrong = await put({ contentType: 'application/pdf', url: at0, hash: hashOf(PDF(70_000)) });
  const none = await put({ contentType: 'application/pdf', url: link('DocumentReference.content[1].attachment') });
  t.comment(JSON.stringify({ wrong, right, guessedWrong, none }));
  t.same(wrong, right, 'a wrong size and the right size get the same answer');
  t.same(none[0], right[0], 'a path without stored content and one with it get the same answer');
});
