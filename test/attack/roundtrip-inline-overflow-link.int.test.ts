// (Low, issue 13 round 5; the refusal is the documented behaviour) Attack round 5 of issue 13 (relink surface). Attachment data the upstream holds inline (below
// `externalize.minBytes`) is also linked when it does not fit the answer's budget
// (`inflate.maxBytesPerResponse`: "stored or held inline upstream"). Sent back in the ordinary
// read-modify-update, that own link is resolved only against the STORE (own-content.ts: a blob
// reference or nothing): the content is right there at the path, inline, yet the update is refused
// 409 CONTENT_LINK_UNRESOLVED ("has no stored content at … any more"). A client that reads past the
// budget can never update the resource without re-sending data it was never given.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

t.test('an inline attachment linked past the budget comes back in an update', async (t) => {
  const s = await stack(t, { inflate: { maxBytesPerResponse: 1000 } });
  const text = Buffer.from('x'.repeat(4000));
  const c = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'text/plain', data: text.toString('base64') } }],
    }),
  });
  t.equal(c.status, 201);
  const id = ((await c.json()) as { id: string }).id;
  const read = (await (
    await fetch(`${s.gw.base}/DocumentReference/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } })
  ).json()) as Record<string, any>;
  t.comment(`read past the budget: ${JSON.stringify(read.content)}`);
  t.type(read.content[0].attachment.url, 'string', 'the inline data was linked');
  read.description = 'edited';
  const put = await outcome(
    fetch(`${s.gw.base}/DocumentReference/${id}`, {
      method: 'PUT',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(read),
    }),
  );
  // Inline data is not in the store: its link cannot be taken back. Refused, saying so (never a
  // version stored without its text); taking inline data back by link is a documented limit.
  t.same(put, [409, 'CONTENT_LINK_UNRESOLVED'], 'refused, not stored as a link to nothing');
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as Record<string, any>;
  t.equal(held.content[0].attachment.data, text.toString('base64'), 'the FHIR server keeps the text');
  t.notOk(held.description, 'the refused update changed nothing');
});
