// Attack round 6 of issue 13 (relink surface). The write direction stores attachment data wherever
// it is (any depth up to 128, any element but Signature/SampledData, primitive extensions too);
// the read direction links what it does not inline with the attachment's path from its owner
// (`pathBelow`). But `$binary-access-read` and relink accept only `PATH` (attachment-path.ts):
// at most 8 lowercase steps. A QuestionnaireResponse answer four groups deep (9 steps) or an
// attachment in a primitive's extension (`_status.extension[0].valueAttachment`) gets a link that
// answers 400: past the budget the content can be reached by no one, and the read-modify-update
// with the links it was given is refused (400) for the whole resource, though the content is the
// resource's own and unchanged.
// Fixed: the path grammar takes `_` names and 64 steps; the write side stores data only where it can name it.
import t from 'tap';
import { sendResource, readLinked } from '../helpers/lifecycle.js';
import type { Test } from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';

const BASE = 'http://gateway.test/fhir';

async function roundTrip(t: Test, s: Awaited<ReturnType<typeof stack>>, resource: Record<string, unknown>, pick: (r: any) => any) {
  const type = resource['resourceType'] as string;
  const created = await sendResource(s, 'POST', `/${type}`, resource);
  t.equal(created.status, 201, 'the content is accepted and stored');
  const id = ((await created.json()) as { id: string }).id;
  // Read with links (as past inflate.maxBytesPerResponse).
  const body = await readLinked(s, `/${type}/${id}`);
  const att = pick(body);
  t.type(att.url, 'string', 'the read answered a link');
  const link = String(att.url);
  t.comment(link);
  const followed = await fetch(`${s.gw.base}${link.slice(BASE.length)}`, { headers: s.auth });
  const bytes = Buffer.from(await followed.arrayBuffer());
  t.equal(followed.status, 200, `the link serves the content (got ${followed.status}: ${bytes.toString('utf8', 0, 200)})`);
  const put = await sendResource(s, 'PUT', `/${type}/${id}`, { ...body, meta: undefined });
  const text = await put.text();
  t.equal(put.status, 200, `the read-modify-update with its own link is taken (got ${put.status}: ${text.slice(0, 300)})`);
}

t.test('an attachment deeper than 8 steps: its link serves it, and comes back', async (t) => {
  const s = await stack(t);
  const attachment = { contentType: 'application/pdf', data: PDF(70_000).toString('base64') };
  // item[0].answer[0].item[0].answer[0].item[0].answer[0].item[0].answer[0].valueAttachment: 9 steps.
  const resource = {
    resourceType: 'QuestionnaireResponse',
    status: 'completed',
    item: [
      {
        linkId: 'a',
        answer: [
          {
            valueString: 'x',
            item: [
              {
                linkId: 'b',
                answer: [
                  {
                    valueString: 'y',
                    item: [
                      { linkId: 'c', answer: [{ valueString: 'z', item: [{ linkId: 'd', answer: [{ valueAttachment: attachment }] }] }] },
                    ],
                  },
                ],
              },
            ],
          },
        ],
      },
    ],
  };
  await roundTrip(t, s, resource, (r) => r.item[0].answer[0].item[0].answer[0].item[0].answer[0].item[0].answer[0].valueAttachment);
});

t.test('an attachment in a primitive element’s extension: its link serves it, and comes back', async (t) => {
  const s = await stack(t);
  const resource = {
    resourceType: 'DocumentReference',
    status: 'current',
    _status: {
      extension: [
        { url: 'urn:example:evidence', valueAttachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } },
      ],
    },
    content: [{ attachment: { contentType: 'application/pdf', url: 'https://records.example.org/1.pdf' } }],
  };
  await roundTrip(t, s, resource, (r) => r._status.extension[0].valueAttachment);
});
