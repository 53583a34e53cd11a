// Fixed: at a root only a Binary’s own link is taken back; placeable() applies below the document as for data.
// Attack round 8 of issue 13. Round 7's one placement rule (externalize.ts `placeable`) is applied
// to a link taken back only `if (!frame.root)`: a link in a `_data` at a resource root (the
// document itself, a contained resource, any object under `resource`/`outcome`) is taken back with
// no placement check, and with no check that the root is a Binary — data sent at the same place is
// refused (rewrittenMembers: "a data member at the root of a resource is only valid in Binary";
// placeable: 64 steps). The content then sits where no link can name it: the next read past the
// budget links to `path=DocumentReference` (no step) or a 65-step path, both refused (400).
import t, { type Test } from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { createDocument, sendResource, readLinked } from '../helpers/lifecycle.js';

const BASE = 'http://gateway.test/fhir';

async function attempt(
  t: Test,
  place: (body: Record<string, any>, sent: { att: Record<string, any>; link: Record<string, any> }) => void,
  find: (after: Record<string, any>) => any,
) {
  const s = await stack(t);
  const doc = await createDocument(s, {}, t);
  const get = () => readLinked(s, `/DocumentReference/${doc.id}`);
  const body = await get();
  const att = body.content[0].attachment as Record<string, any>;
  t.type(att.url, 'string', 'the read answered a link');
  // The digest a `_data` link carries (a read answers it so where the attachment has its own url; taken here from the upstream).
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${doc.id}`)).json()) as Record<string, any>;
  const sha256 = held.content[0].attachment._data.extension[0].extension[1].valueString as string;
  // The same content, as a Binary-shaped `_data` link (what a read answers where the attachment has its own url).
  const link = {
    contentType: att.contentType,
    _data: {
      extension: [
        { url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-url', valueUrl: att.url },
        { url: 'http://fhir-binary-gateway.dev/fhir/StructureDefinition/content-sha256', valueString: sha256 },
      ],
    },
  };
  place(body, { att, link });
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
  const where = find(after);
  const url = String(where?.url ?? where?._data?.extension?.find((e: any) => /content-url/.test(e.url))?.valueUrl ?? '');
  t.comment(`link: ${url.slice(0, 300)}`);
  const followed = await fetch(`${s.gw.base}${url.slice(BASE.length)}`, { headers: s.auth });
  const got = Buffer.from(await followed.arrayBuffer());
  t.equal(
    followed.status,
    200,
    `an accepted relink leaves content its link serves (got ${followed.status}: ${got.toString('utf8', 0, 160)})`,
  );
}

t.test('an own link taken back at the root of the resource (not a Binary)', async (t) => {
  await attempt(
    t,
    (body, { link }) => {
      Object.assign(body, link);
    },
    (after) => after,
  );
});

t.test('an own link taken back in a contained Binary 65 steps down', async (t) => {
  const chain = Array.from({ length: 63 }, (_, i) => (i % 2 === 0 ? 'identifier' : 'assigner'));
  await attempt(
    t,
    (body, { link }) => {
      let inner: Record<string, unknown> = { contained: [{ resourceType: 'Binary', ...link }] };
      for (const step of [...chain].reverse()) inner = { [step]: inner };
      body.subject = { display: 'x', ...inner };
    },
    (after) => {
      let x: any = after.subject;
      for (const step of chain) x = x[step];
      return x.contained[0];
    },
  );
});
