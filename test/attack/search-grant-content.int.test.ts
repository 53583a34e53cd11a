// FINDING (issue 12 hole 4): an `s` grant reached content. `user/*.s` (no read) got a Binary's
// content inflated through `Provenance?target=Binary/X&_include=Provenance:target`, while a
// direct read needs `r` and a securityContext check. Reaching Binary now needs what Binary
// search needs (an unrestricted `*.r`), and stored content is inflated only into resources the
// caller may read (`r`); the others carry a link, which checks on its own.
import t from 'tap';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';
import { direct, outcome, uploadGoverned } from './helpers.js';

/** A DocumentReference written through the gateway (externalized when its data is large enough). */
async function createDocument(s: Stack, contentType: string, data: string): Promise<string> {
  const doc = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({ resourceType: 'DocumentReference', status: 'current', content: [{ attachment: { contentType, data } }] }),
  });
  return ((await doc.json()) as { id: string }).id;
}

t.test('a search grant finds resources; reading their content needs read', async (t) => {
  const s = await stack(t);
  const patient = await direct(s, { resourceType: 'Patient' });
  const pdf = PDF(200_000);
  const binary = await uploadGoverned(s, pdf, 'application/pdf', `Patient/${patient}`);
  await direct(s, {
    resourceType: 'Provenance',
    target: [{ reference: `Binary/${binary}` }],
    recorded: '2026-01-01T00:00:00Z',
    agent: [{ who: { display: 'x' } }],
  });
  const searcher = await s.as('user/*.s');
  const get = async (path: string, headers: Record<string, string>) => fetch(`${s.gw.base}${path}`, { headers });

  for (const include of ['Provenance:target', 'Provenance:target:Binary']) {
    const r = await get(`/Provenance?target=Binary/${binary}&_include=${include}`, searcher);
    const text = await r.text();
    t.same([r.status, JSON.parse(text).issue[0].details.coding[0].code], [403, 'INSUFFICIENT_SCOPE'], include);
    t.match(text, /requires user\/\*\.r/, 'names what would do');
  }
  t.same(await outcome(get(`/?_type=Binary`, searcher)), [403, 'INSUFFICIENT_SCOPE'], 'system search of Binary');

  // Control: a caller who may read everything gets the Binary, its content inflated.
  const reader = await s.as('user/*.rs');
  const ok = await get(`/Provenance?target=Binary/${binary}&_include=Provenance:target:Binary`, reader);
  t.equal(ok.status, 200);
  const b = (await ok.json()) as { entry: { resource: { resourceType: string; data?: string } }[] };
  t.equal(b.entry.find((e) => e.resource.resourceType === 'Binary')?.resource.data, pdf.toString('base64'), 'inflated');

  // DocumentReference content: search grant → link, read grant → inflated.
  const docPdf = PDF(100_000);
  const id = await createDocument(s, 'application/pdf', docPdf.toString('base64'));
  type Att = { data?: string; url?: string };
  const attachment = async (scope: string) => {
    const r = await get(`/DocumentReference?_id=${id}`, await s.as(scope));
    t.equal(r.status, 200, scope);
    return ((await r.json()) as { entry: { resource: { content: { attachment: Att }[] } }[] }).entry[0].resource.content[0].attachment;
  };
  const found = await attachment('user/DocumentReference.s');
  t.equal(found.data, undefined, 's: no content');
  t.match(found.url, /\$binary-access-read\?path=/, 's: a link, which needs read to follow');
  t.equal((await attachment('user/DocumentReference.rs')).data, docPdf.toString('base64'), 'rs: inflated');
  const followed = await fetch(found.url!.replace('http://gateway.test/fhir', s.gw.base), {
    headers: await s.as('user/DocumentReference.s'),
  });
  t.same(
    [followed.status, JSON.parse(await followed.text()).issue[0].details.coding[0].code],
    [403, 'INSUFFICIENT_SCOPE'],
    'the link checks',
  );
});

t.test('inline attachment content is not sent to a search-only caller either', async (t) => {
  // Found from outside: data under externalize.minBytes stays inline upstream and was sent to user/X.s.
  const s = await stack(t);
  const id = await createDocument(s, 'text/plain', 'U0VDUkVU');
  const attachment = async (scope: string) => {
    const r = await fetch(`${s.gw.base}/DocumentReference?_id=${id}`, { headers: await s.as(scope) });
    const text = await r.text();
    return {
      text,
      att: (JSON.parse(text) as { entry: { resource: { content: { attachment: { data?: string; url?: string } }[] } }[] }).entry[0].resource
        .content[0].attachment,
    };
  };
  const found = await attachment('user/DocumentReference.s');
  t.equal(found.att.data, undefined, 's: no inline data');
  t.notMatch(found.text, /U0VDUkVU/);
  t.match(found.att.url, /\$binary-access-read\?path=/, 's: a link');
  t.equal((await attachment('user/DocumentReference.rs')).att.data, 'U0VDUkVU', 'rs: the data');
});
