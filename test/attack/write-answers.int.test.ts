// FINDING (issue 12 hole 5): write answers revealed what the caller may not read. A token with
// only `user/DocumentReference.u` got the whole resource, other attachments inflated, in the
// answer to PATCH (even an empty patch `[]`) and to `$binary-access-write`. Without read on the
// type, a successful write now answers with status and version headers only (what
// `Prefer: return=minimal` gives), never a body.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { BUNDLE_RULE, bundle } from './helpers.js';

const DOC = {
  resourceType: 'DocumentReference',
  status: 'current',
  content: [
    { attachment: { contentType: 'application/pdf', title: 'report', data: PDF(100_000).toString('base64') } },
    { attachment: { contentType: 'application/pdf', title: 'second' } },
  ],
};

t.test('a writer who may not read gets no resource back', async (t) => {
  const s = await stack(t);
  const json = { 'content-type': 'application/fhir+json' };
  const c = await fetch(`${s.gw.base}/DocumentReference`, { method: 'POST', headers: { ...s.auth, ...json }, body: JSON.stringify(DOC) });
  t.equal(c.status, 201);
  const { id } = (await c.json()) as { id: string };
  t.equal(s.gw.blobFiles().length > 0, true, 'the first attachment is in the store');

  const writer = await s.as('user/DocumentReference.cu files.write fhir.write');
  const patchHeaders = { ...writer, 'content-type': 'application/json-patch+json' };
  const emptyPatch = await fetch(`${s.gw.base}/DocumentReference/${id}`, { method: 'PATCH', headers: patchHeaders, body: '[]' });
  t.equal(emptyPatch.status, 200, 'the empty patch is applied');
  t.equal(await emptyPatch.text(), '', 'and answers no body');
  t.ok(emptyPatch.headers.get('etag'), 'the version is still told');

  const patch = [{ op: 'replace', path: '/status', value: 'superseded' }];
  const p = await fetch(`${s.gw.base}/DocumentReference/${id}`, { method: 'PATCH', headers: patchHeaders, body: JSON.stringify(patch) });
  t.equal(p.status, 200);
  t.equal(await p.text(), '');

  const w = await fetch(`${s.gw.base}/DocumentReference/${id}/$binary-access-write?path=DocumentReference.content[1].attachment`, {
    method: 'POST',
    headers: { ...writer, 'content-type': 'application/pdf' },
    body: PDF(2000),
  });
  t.equal(w.status, 200, '$binary-access-write succeeds');
  t.equal(await w.text(), '', 'without the resource');

  const put = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PUT',
    headers: { ...writer, ...json },
    body: JSON.stringify({ ...DOC, id, content: [{ attachment: { contentType: 'text/plain', data: 'aGk=' } }] }),
  });
  t.equal(put.status, 200, 'update');
  t.equal(await put.text(), '');

  const created = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...writer, ...json },
    body: JSON.stringify(DOC),
  });
  t.equal(created.status, 201, 'create');
  t.equal(await created.text(), '');
  t.match(created.headers.get('location'), /\/DocumentReference\/[^/]+\/_history\/1$/, 'Location is kept');

  // Errors still explain themselves.
  const bad = await fetch(`${s.gw.base}/DocumentReference/${id}`, { method: 'PATCH', headers: patchHeaders, body: '[{"op":"nonsense"}]' });
  t.ok(bad.status >= 400, 'a failed patch');
  t.match(await bad.text(), /OperationOutcome/, 'answers its OperationOutcome');

  // Control: a writer who may read gets the resource, attachments inflated.
  const reader = await s.as('user/DocumentReference.cru files.write fhir.write');
  const r = await fetch(`${s.gw.base}/DocumentReference/${id}`, {
    method: 'PATCH',
    headers: { ...reader, 'content-type': 'application/json-patch+json' },
    body: '[]',
  });
  const text = await r.text();
  t.equal(r.status, 200, text);
  t.equal((JSON.parse(text) as { resourceType: string }).resourceType, 'DocumentReference');
});

t.test('a Bundle answer carries no written resource to a caller who may not read it', async (t) => {
  // Found from outside: the batch form of the same writes returned the resources, a matched conditional create the existing one.
  const s = await stack(t, { rules: [BUNDLE_RULE] });
  const json = { 'content-type': 'application/fhir+json' };
  const small = {
    ...DOC,
    identifier: [{ value: 'small' }],
    description: 'secret',
    content: [{ attachment: { contentType: 'text/plain', data: 'c2VjcmV0' } }],
  };
  const c = await fetch(`${s.gw.base}/DocumentReference`, { method: 'POST', headers: { ...s.auth, ...json }, body: JSON.stringify(small) });
  t.equal(c.status, 201);
  await c.arrayBuffer();
  const creator = await s.as('user/DocumentReference.cs fhir.write files.write');
  for (const type of ['batch', 'transaction']) {
    const r = await bundle(
      s,
      creator,
      [
        { request: { method: 'POST', url: 'DocumentReference', ifNoneExist: 'identifier=small' }, resource: small },
        { request: { method: 'POST', url: 'DocumentReference' }, resource: { ...small, identifier: [{ value: 'another' }] } },
      ],
      type,
    );
    const text = await r.text();
    t.equal(r.status, 200, type);
    const answer = JSON.parse(text) as { entry: { resource?: unknown; response?: { status?: string; location?: string } }[] };
    t.match(answer.entry[0].response?.status, /^200/, `${type}: the match is told`);
    t.match(answer.entry[1].response?.status, /^201/, `${type}: the create is told`);
    t.ok(answer.entry[1].response?.location, `${type}: with its location`);
    t.same(
      answer.entry.map((e) => e.resource),
      [undefined, undefined],
      `${type}: neither resource`,
    );
    t.notMatch(text, /secret|c2VjcmV0/, `${type}: nothing of the existing resource`);
  }
  // Control: a caller who may read gets them.
  const r = await bundle(s, await s.as('user/DocumentReference.crs fhir.write files.write'), [
    { request: { method: 'POST', url: 'DocumentReference', ifNoneExist: 'identifier=small' }, resource: small },
  ]);
  t.equal(((await r.json()) as { entry: { resource?: { resourceType: string } }[] }).entry[0].resource?.resourceType, 'DocumentReference');
});
