// FINDING (attack round 5, integrity of what is served): an update's own content link (read
// with `_inflate=false`, sent back — docs/binary.md "Links coming back in a write") is turned back
// into the stored reference without looking at the `contentType` sent beside it. The attachment's
// declared type is neither checked against the resource's allow-list nor against the type the
// content was checked as when it was stored (the blob record's `contentType`). So a client that
// may update relabels checked content as any type: stored text/plain becomes `text/html` (not on
// DocumentReference's allow-list), a stored PDF Binary becomes `text/html`; `$binary-access-read`
// and the raw Binary read then serve the bytes under that type (for stored content the declared
// type is trusted: binary-access.ts serveAttachment, binary-read.ts serve). The same write with
// `data` instead of the link is refused 415 UNSUPPORTED_MEDIA.
import t from 'tap';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

// Text the content check accepts as text/plain (valid UTF-8, no NUL), large enough to be stored.
const PAGE = Buffer.from(`<html><body><script>document.title='x'</script>${'<p>lorem ipsum</p>\n'.repeat(4000)}</body></html>`);

t.test('an own content link sent back cannot relabel the stored content as another type', async (t) => {
  const s = await stack(t);
  const json = { ...s.auth, 'content-type': 'application/fhir+json' };
  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'text/plain', data: PAGE.toString('base64') } }],
    }),
  });
  t.equal(created.status, 201);
  const id = ((await created.json()) as { id: string }).id;

  // Control: the same relabel sent with the data is refused.
  const withData = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      id,
      status: 'current',
      content: [{ attachment: { contentType: 'text/html', data: PAGE.toString('base64') } }],
    }),
  });
  t.same(await outcome(withData), [415, 'UNSUPPORTED_MEDIA'], 'control: text/html with the data is refused');

  const read = (await (
    await fetch(`${s.gw.base}/DocumentReference/${id}?_inflate=false`, { headers: { ...s.auth, accept: 'application/fhir+json' } })
  ).json()) as Record<string, any>;
  t.type(read.content[0].attachment.url, 'string', 'the read answered a link');
  read.content[0].attachment.contentType = 'text/html';
  const relabel = await fetch(`${s.gw.base}/DocumentReference/${id}`, { method: 'PUT', headers: json, body: JSON.stringify(read) });
  const [status, code] = await outcome(relabel);
  const served = await fetch(
    `${s.gw.base}/DocumentReference/${id}/$binary-access-read?path=${encodeURIComponent('DocumentReference.content[0].attachment')}`,
    { headers: s.auth },
  );
  await served.arrayBuffer();
  t.comment(`relabel answered ${status} ${code ?? ''}; content now served as ${served.headers.get('content-type')}`);
  t.same([status, code], [415, 'UNSUPPORTED_MEDIA'], 'the relabel through the link is refused like the one with data');
  t.equal(served.headers.get('content-type'), 'text/plain', 'the stored text is still served as what it was checked as');

  // The Binary: a stored PDF, read as FHIR JSON with its content linked, contentType changed.
  const up = await upload(s, PDF(70_000), 'application/pdf');
  await up.arrayBuffer();
  const bin = createdId(up);
  const found = (await (await fetch(`${s.gw.base}/Binary/${bin}/_history?_inflate=false`, { headers: s.auth })).json()) as Record<
    string,
    any
  >;
  const asRead = found.entry[0].resource as Record<string, any>;
  asRead.contentType = 'text/html';
  const back = await fetch(`${s.gw.base}/Binary/${bin}`, { method: 'PUT', headers: json, body: JSON.stringify(asRead) });
  const [bStatus, bCode] = await outcome(back);
  const raw = await fetch(`${s.gw.base}/Binary/${bin}`, { headers: s.auth });
  await raw.arrayBuffer();
  t.comment(`Binary relabel answered ${bStatus} ${bCode ?? ''}; served as ${raw.headers.get('content-type')}`);
  t.same([bStatus, bCode], [415, 'UNSUPPORTED_MEDIA'], 'a Binary relabel through its link is refused');
  t.equal(raw.headers.get('content-type'), 'application/pdf', 'the PDF is still served as a PDF');
});
