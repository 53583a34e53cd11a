// FINDING (issue 12 hole 6, operation bodies): an operation may store what it is sent
// ($process-message, $submit-attachment, …). Attachment data under externalize.minBytes passed
// unchecked: `text/html` (or HTML declared as a PDF) reached the upstream. It is now checked like
// a write's inline data: the declared type must be allowed, the content must be what it says.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

const HTML = Buffer.from('<html><script>alert(1)</script></html>');

t.test('attachment data in operation bodies is content-checked', async (t) => {
  const s = await stack(t);
  const ops = () => s.up.requests.filter((r) => r.url.includes('$')).length;
  const params = (contentType: string, data: Buffer) =>
    JSON.stringify({
      resourceType: 'Parameters',
      parameter: [
        {
          name: 'resource',
          resource: {
            resourceType: 'DocumentReference',
            status: 'current',
            content: [{ attachment: { contentType, data: data.toString('base64') } }],
          },
        },
      ],
    });
  const post = (body: string, path = 'DocumentReference/$validate') =>
    fetch(`${s.gw.base}/${path}`, { method: 'POST', headers: { ...s.auth, 'content-type': 'application/fhir+json' }, body });

  t.same(await outcome(post(params('text/html', HTML))), [415, 'UNSUPPORTED_MEDIA'], 'a type the policy does not allow');
  t.same(await outcome(post(params('application/pdf', HTML))), [415, 'UNSUPPORTED_MEDIA'], 'HTML declared as a PDF');
  const inMessage = await outcome(
    post(
      JSON.stringify({
        resourceType: 'Bundle',
        type: 'message',
        entry: [
          {
            resource: { resourceType: 'Media', status: 'completed', content: { contentType: 'text/html', data: HTML.toString('base64') } },
          },
        ],
      }),
      '$process-message',
    ),
  );
  t.same(inMessage, [415, 'UNSUPPORTED_MEDIA'], 'inside a message Bundle');
  t.equal(ops(), 0, 'none reached the upstream');

  const ok = await post(params('application/pdf', PDF(500)));
  t.not(ok.status, 415, 'a real PDF passes');
  await ok.arrayBuffer();
  t.equal(ops(), 1);
  t.same(s.gw.blobFiles(), [], 'nothing is stored by the check');
});
