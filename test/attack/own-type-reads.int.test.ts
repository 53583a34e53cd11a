// FINDINGS (issue 12, third outside check): a type's read rules held only for the interaction
// named in the rule. History, vread, operations and write answers read the type too, and an
// include of the searched type itself, or a stored Bundle, escaped the restrictions on it.
import t from 'tap';
import { PDF, stack } from '../helpers/binary-stack.js';
import { direct, outcome } from './helpers.js';

const LAN = ['10.20.0.0/16']; // the test client is 127.0.0.1: outside

t.test("a type's read rules hold for everything that reads it", async (t) => {
  const s = await stack(t, {
    rules: [
      { name: 'device-reads', match: { resourceTypes: ['Device'], interactions: ['read', 'search'] }, require: { ipAllow: LAN } },
      {
        name: 'doc-reads',
        match: { resourceTypes: ['DocumentReference'], interactions: ['read', 'vread', 'search', 'history'] },
        require: { ipAllow: LAN },
      },
    ],
  });
  const device = await direct(s, { resourceType: 'Device', status: 'active', identifier: [{ value: 'dev1' }] });
  const json = { ...s.auth, 'content-type': 'application/fhir+json' };
  const patch = { ...s.auth, 'content-type': 'application/json-patch+json' };
  t.same(await outcome(fetch(`${s.gw.base}/Device/${device}`, { headers: s.auth })), [403, 'FORBIDDEN'], 'control: a read');
  t.same(await outcome(fetch(`${s.gw.base}/Device/${device}/_history/1`, { headers: s.auth })), [403, 'FORBIDDEN'], 'vread');
  t.same(await outcome(fetch(`${s.gw.base}/Device/${device}/_history`, { headers: s.auth })), [403, 'FORBIDDEN'], 'history');
  t.same(await outcome(fetch(`${s.gw.base}/Device/_history`, { headers: s.auth })), [403, 'FORBIDDEN'], 'type history');
  t.same(
    await outcome(
      fetch(`${s.gw.base}/Device`, {
        method: 'POST',
        headers: { ...json, 'if-none-exist': 'identifier=dev1' },
        body: JSON.stringify({ resourceType: 'Device', status: 'active' }),
      }),
    ),
    [403, 'FORBIDDEN'],
    'conditional create: its criteria search Devices',
  );
  t.same(
    await outcome(
      fetch(`${s.gw.base}/Device?identifier=dev1`, {
        method: 'PUT',
        headers: json,
        body: JSON.stringify({ resourceType: 'Device', status: 'active' }),
      }),
    ),
    [403, 'FORBIDDEN'],
    'conditional update',
  );
  const p = await fetch(`${s.gw.base}/Device/${device}`, { method: 'PATCH', headers: patch, body: '[]' });
  t.equal(p.status, 200, 'a plain write goes ahead');
  t.equal(await p.text(), '', 'its answer without the Device');
  const c = await fetch(`${s.gw.base}/Device`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({ resourceType: 'Device', status: 'active' }),
  });
  t.equal(c.status, 201);
  t.equal(await c.text(), '');
  t.ok(c.headers.get('location'), 'with its Location');

  const d = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: PDF(2000).toString('base64') } }],
    }),
  });
  const doc = (d.headers.get('location') ?? '').split('/')[5];
  t.equal(await d.text(), '', 'created, answer left out');
  t.same(
    await outcome(
      fetch(`${s.gw.base}/DocumentReference/${doc}/$binary-access-read?path=DocumentReference.content.attachment`, { headers: s.auth }),
    ),
    [403, 'FORBIDDEN'],
    '$binary-access-read reads the type',
  );

  // A stored Bundle carries any type: every type's rules apply.
  const bundle = await direct(s, {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [{ resource: { resourceType: 'Device', id: device, status: 'active' } }],
  });
  t.same(await outcome(fetch(`${s.gw.base}/Bundle/${bundle}`, { headers: s.auth })), [403, 'FORBIDDEN'], 'a stored Bundle');
});

t.test('an include of the searched type is held to a restricted scope', async (t) => {
  const s = await stack(t);
  const lab = await s.as('user/Observation.rs?category=laboratory');
  for (const q of [
    '_include=Observation:has-member:Observation',
    '_revinclude=Observation:derived-from',
    '_include:iterate=Observation:has-member:Observation',
  ]) {
    t.same(await outcome(fetch(`${s.gw.base}/Observation?category=laboratory&${q}`, { headers: lab })), [403, 'INSUFFICIENT_SCOPE'], q);
  }
  const r = await fetch(`${s.gw.base}/Observation?category=laboratory`, { headers: lab });
  t.equal(r.status, 200, 'control: the restricted search itself');
  await r.arrayBuffer();
  const all = await fetch(`${s.gw.base}/Observation?category=laboratory&_include=Observation:has-member:Observation`, {
    headers: await s.as('user/Observation.rs'),
  });
  t.equal(all.status, 200, 'an unrestricted grant may');
  await all.arrayBuffer();
});
