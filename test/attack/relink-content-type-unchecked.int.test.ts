// Attack round 5 of issue 13 (relink surface). An update's own content link becomes the reference
// to the stored content again (rewrite/externalize.ts relink), but the attachment's `contentType`
// written beside it is never checked: not against the content (the sniffer), not against the
// resource's allow-list (checkAllowed only sees attachments whose `data` was read). Stored
// content is served raw with the attachment's declared type ("checked when written"), so a PUT
// can retype a PDF as `text/html` (or any type `content.allowedTypes` refuses) and
// `$binary-access-read` / the Binary raw read serve it so. The same change by PATCH is refused
// (patch-attachment), as is `text/html` with data.
import t from 'tap';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';
import { createDocument } from '../helpers/lifecycle.js';
import { outcome } from './helpers.js';

t.test('a relinked attachment keeps its checked type: a PUT cannot retype stored content', async (t) => {
  const s = await stack(t);
  const json = { ...s.auth, 'content-type': 'application/fhir+json' };
  const doc = await createDocument(s, {}, t);
  const path = 'DocumentReference.content[0].attachment';
  const link = `${s.gw.publicBaseUrl}/DocumentReference/${doc.id}/$binary-access-read?path=${encodeURIComponent(path)}`;

  // The same retyping with data is refused: the baseline.
  const withData = await outcome(
    fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
      method: 'PUT',
      headers: json,
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        id: doc.id,
        status: 'current',
        content: [{ attachment: { contentType: 'text/html', data: PDF(70_000).toString('base64') } }],
      }),
    }),
  );
  t.same(withData, [415, 'UNSUPPORTED_MEDIA'], 'text/html with data: refused');

  // Read-modify-update with the link, the type changed to one DocumentReference may not carry.
  const put = await fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
    method: 'PUT',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      id: doc.id,
      status: 'current',
      content: [{ attachment: { contentType: 'text/html', url: link } }],
    }),
  });
  const put1 = [put.status, (await put.text()).slice(0, 200)];
  t.comment(`PUT with link + text/html: ${JSON.stringify(put1)}`);
  const read = await fetch(`${s.gw.base}/DocumentReference/${doc.id}/$binary-access-read?path=${encodeURIComponent(path)}`, {
    headers: s.auth,
  });
  await read.arrayBuffer();
  t.comment(`$binary-access-read now: ${read.status} ${read.headers.get('content-type')}`);
  t.equal(put1[0], 415, 'the retyping by link is refused like the retyping with data');
  t.not(read.headers.get('content-type'), 'text/html', 'the PDF is never served as text/html');

  // A type the allow-list admits but the content contradicts (image/png for a PDF).
  const png = await outcome(
    fetch(`${s.gw.base}/DocumentReference/${doc.id}`, {
      method: 'PUT',
      headers: json,
      body: JSON.stringify({
        resourceType: 'DocumentReference',
        id: doc.id,
        status: 'current',
        content: [{ attachment: { contentType: 'image/png', url: link } }],
      }),
    }),
  );
  t.equal(png[0], 415, `a PDF relinked as image/png is refused (got ${JSON.stringify(png)})`);
});

t.test('a Binary sent back with its content-url and another contentType', async (t) => {
  const s = await stack(t);
  const pdf = PDF(70_000);
  const up = await upload(s, pdf, 'application/pdf');
  await up.arrayBuffer();
  const id = createdId(up);
  const back = await fetch(`${s.gw.base}/Binary/${id}`, {
    method: 'PUT',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'Binary',
      id,
      contentType: 'application/x-msdownload',
      _data: {
        extension: [
          { url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-url', valueUrl: `${s.gw.publicBaseUrl}/Binary/${id}` },
        ],
      },
    }),
  });
  const status = back.status;
  await back.arrayBuffer();
  const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/x-msdownload' } });
  await raw.arrayBuffer();
  t.comment(`PUT ${status}; raw read ${raw.status} ${raw.headers.get('content-type')}`);
  t.equal(status, 415, 'a type Binary may not carry (content.allowedTypes) is refused');
  t.not(raw.headers.get('content-type'), 'application/x-msdownload', 'the PDF is not served as an executable');
});
