// The answer guard's side of the read rewrite: entries wait behind a gate until the guard decides;
// dropped ones leave nothing (commas included), stored content in them is never fetched, and the
// list ends with one OperationOutcome entry saying how many were withheld.
import t from 'tap';
import { answerGuard } from '../../src/security/answer-guard.js';
import { parseScopes } from '../../src/security/scopes.js';
import type { Principal } from '../../src/security/checks.js';
import type { EffectiveRule } from '../../src/security/policy.js';
import type { VerifiedToken } from '../../src/security/jwt.js';
import { classifyRequest } from '../../src/fhir/classify.js';
import { OWN_ONLY, reachOf } from '../../src/fhir/reach.js';
import type { EntryGuard } from '../../src/rewrite/params.js';
import { engine } from '../helpers/engine.js';
import { PDF } from '../helpers/content.js';

type Entry = { resource?: Record<string, unknown>; search?: { mode: string } };
const bundle = (...entries: Entry[]) =>
  JSON.stringify({ resourceType: 'Bundle', type: 'searchset', total: entries.length, entry: entries, link: [] });
const obs = (id: string, subject: string, extra: Record<string, unknown> = {}) => ({
  resource: { resourceType: 'Observation', id, subject: { reference: subject }, ...extra },
});

/** Drops resources whose id starts with 'x'. */
const byId: EntryGuard = {
  type: () => undefined,
  id: (_t, id) => (id.startsWith('x') ? 'drop' : 'admit'),
  reference: () => undefined,
  end: () => 'admit',
};

t.test('dropped entries leave valid JSON whatever their place and however the answer is cut', async (t) => {
  const e = engine(t);
  const cases: string[][] = [['a', 'b'], ['x1', 'b'], ['a', 'x1'], ['x1', 'x2'], ['x1'], ['a', 'x1', 'b', 'x2', 'x3', 'c']];
  for (const ids of cases) {
    const body = bundle(...ids.map((id) => obs(id, 'Patient/p')));
    for (const cut of [65536, 7, 1]) {
      const { text } = await e.inflate(body, { guard: byId }, cut);
      const out = JSON.parse(text) as { entry: Entry[]; link: unknown[]; total: number };
      const kept = ids.filter((id) => !id.startsWith('x'));
      const dropped = ids.length - kept.length;
      t.same(
        out.entry.filter((x) => x.resource?.['resourceType'] === 'Observation').map((x) => x.resource?.['id']),
        kept,
        `${ids} (cut ${cut})`,
      );
      t.same(out.link, [], 'what follows the list is intact');
      if (dropped > 0) {
        const last = out.entry[out.entry.length - 1];
        t.same(last.search, { mode: 'outcome' }, 'one outcome entry at the end');
        t.match(JSON.stringify(last.resource), new RegExp(`${dropped} entr(y was|ies were) withheld`));
        t.notMatch(text, /x1|x2|x3/, 'nothing of a dropped entry');
      } else t.equal(out.entry.length, ids.length, 'nothing added when nothing was dropped');
    }
  }
});

t.test('stored content of a dropped entry is neither fetched nor sent; of an admitted one, inflated', async (t) => {
  const e = engine(t);
  const pdf = PDF(50_000);
  const doc = (id: string) => ({
    resourceType: 'DocumentReference',
    id,
    status: 'current',
    content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
  });
  const held: string[] = [];
  for (const id of ['keep', 'xdrop']) {
    const { text, ext } = await e.externalize(JSON.stringify(doc(id)));
    await e.link(ext, `DocumentReference/${id}`);
    held.push(text);
  }
  const body = `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":${held[0]}},{"resource":${held[1]}}]}`;
  const { text, report } = await e.inflate(body, { guard: byId }, 4096);
  const out = JSON.parse(text) as { entry: { resource: { id?: string; content?: { attachment: { data?: string } }[] } }[] };
  t.equal(out.entry[0].resource.id, 'keep');
  t.equal(out.entry[0].resource.content?.[0].attachment.data, pdf.toString('base64'));
  t.equal(out.entry.length, 2, 'the kept entry and the outcome');
  t.same(report, { inflated: 1, linked: 0, bytes: pdf.length }, 'only the admitted blob was read');
  t.same(e.spooled(), [], 'nothing left in the spool');
});

t.test('an entry whose decision never comes within the pending bound fails the answer rather than holding it', async (t) => {
  const e = engine(t);
  const undecided: EntryGuard = { type: () => undefined, id: () => undefined, reference: () => undefined, end: () => 'admit' };
  const big = 'y'.repeat(9 * 1024 * 1024);
  await t.rejects(e.inflate(bundle({ resource: { resourceType: 'Observation', id: 'a', note: [{ text: big }] } }), { guard: undecided }), {
    code: 'UPSTREAM_INVALID',
  });
});

const rule = { require: { smart: true } } as unknown as EffectiveRule;
const principal = (scope: string, launch?: string): Principal => ({
  token: { claims: {} } as VerifiedToken,
  scopes: parseScopes({ scope }),
  patient: launch,
});
const guardFor = (url: string, p: Principal) => {
  const i = classifyRequest({ method: 'GET', url, basePath: '' });
  return answerGuard(i, p, rule, reachOf(i));
};

t.test('the answer guard: only where it applies', async (t) => {
  const user = principal('user/*.rs');
  t.equal(guardFor('/Observation/1', user), undefined, 'a read');
  t.equal(guardFor('/?_id=1', user), undefined, 'an unbounded search');
  t.ok(guardFor('/Observation?code=x', user), 'a bounded search: its own type');
  t.equal(answerGuard(classifyRequest({ method: 'PUT', url: '/Observation/1', basePath: '' }), user, rule, OWN_ONLY), undefined, 'a write');
});

t.test('types: a bounded search carries its own type and what it reached', async (t) => {
  const g = guardFor('/Observation?_include=Observation:subject:Patient', principal('user/*.rs'))!;
  t.equal(g.type('Observation'), 'admit');
  t.equal(g.type('Patient'), 'admit');
  t.equal(g.type('Device'), 'drop');
  t.equal(g.type('OperationOutcome'), 'admit', "the upstream's own notes");
});

t.test('the patient compartment: the patient, its compartment, what names no other patient', async (t) => {
  const g = guardFor('/Patient/p1/$everything', principal('patient/*.rs', 'p1'))!;
  t.equal(g.type('Patient'), undefined);
  t.equal(g.id('Patient', 'p1'), 'admit');
  t.equal(g.id('Patient', 'p2'), 'drop');
  t.equal(g.type('Observation'), undefined, 'a compartment type waits for its references');
  t.equal(g.reference('Observation', 'subject', 'Patient/p1'), 'admit');
  t.equal(g.reference('Observation', 'subject', 'Patient/p1/_history/2'), 'admit', 'versioned');
  t.equal(g.reference('Observation', 'subject', 'http://evil.example/fhir/Patient/p1'), undefined, 'absolute: a host nobody vouches for');
  t.equal(g.reference('Observation', 'subject.extension.valueReference', 'Patient/p1'), undefined, 'deeper than the element');
  t.equal(g.reference('Appointment', 'participant.actor', 'Patient/p1'), 'admit', 'a nested compartment path');
  for (const other of [
    'Patient/p2',
    'Patient/p2/',
    'Patient/p2?x=1',
    'patient/p2',
    ' Patient/p2',
    'Patient/p2#x',
    'Patient?identifier=x',
    '#p2',
    'http://h/fhir/Patient/p1',
  ]) {
    t.equal(g.reference('Device', 'patient', other), 'drop', `outside any compartment, naming ${JSON.stringify(other)}`);
  }
  t.equal(g.reference('Device', 'patient', 'Patient/p1'), undefined, 'naming the patient itself');
  t.equal(g.type('Bundle'), 'drop', 'a nested Bundle could carry anything');
  t.equal(g.reference('Observation', 'focus', 'Patient/p1'), undefined, 'not an element that places it in the compartment');
  t.equal(g.reference('Observation', 'subject', 'Patient/p2'), undefined);
  t.equal(g.end('Observation'), 'drop', 'never placed in the compartment');
  t.equal(g.type('Practitioner'), undefined, 'outside any compartment, covered by the scope');
  t.equal(g.reference('Practitioner', 'qualification', 'Patient/p2'), 'drop', 'names another patient');
  t.equal(g.end('Practitioner'), 'admit');
  t.equal(g.type('Binary'), 'drop', 'governed by its securityContext');
  t.equal(g.end(undefined), 'admit', 'an entry without a resource');
  const narrow = guardFor('/Observation?patient=p1', principal('patient/Observation.rs', 'p1'))!;
  t.equal(narrow.type('Practitioner'), 'drop', 'not its own type');
  const medication = guardFor('/Patient/p1/$everything', principal('patient/*.rs patient/Observation.rs', 'p1'))!;
  t.equal(medication.type('Medication'), undefined);
  t.ok(
    guardFor('/Observation?patient=p1', principal('patient/Observation.rs user/Practitioner.r', 'p1')),
    'a mixed token whose user/ scopes do not cover the search: guarded',
  );
  t.equal(
    guardFor('/Observation?_id=1&_include=*', principal('patient/Observation.rs user/Observation.rs', 'p1')),
    undefined,
    "a mixed token whose user/ scope covers it: the user's grant",
  );
});

t.test('the gate judges what came before the type, refuses what it cannot judge', async (t) => {
  const e = engine(t);
  const guard = guardFor('/Patient/p1/$everything', principal('patient/*.rs', 'p1'))!;
  const run = (entries: unknown[], root: Record<string, unknown> = {}) =>
    e.inflate(JSON.stringify({ resourceType: 'Bundle', type: 'searchset', ...root, entry: entries }), { guard });
  const ids = async (entries: unknown[], root?: Record<string, unknown>) =>
    ((JSON.parse((await run(entries, root)).text) as { entry?: { resource?: { resourceType: string; id?: string } }[] }).entry ?? []).map(
      (x) => `${x.resource?.resourceType ?? '-'}/${x.resource?.id ?? ''}`,
    );
  // Keys sorted alphabetically (id, patient, subject before resourceType), as some servers write them.
  t.same(
    await ids([{ resource: { id: 'p1', resourceType: 'Patient' } }, { resource: { id: 'p2', resourceType: 'Patient' } }]),
    ['Patient/p1', 'OperationOutcome/'],
    'id before type',
  );
  t.same(
    await ids([
      { resource: { id: 'o1', subject: { reference: 'Patient/p1' }, resourceType: 'Observation' } },
      { resource: { id: 'd', patient: { reference: 'Patient/p2' }, resourceType: 'Device' } },
    ]),
    ['Observation/o1', 'OperationOutcome/'],
    'references before type',
  );
  for (const type of [null, 7, ['Patient'], { x: 1 }]) {
    t.same(
      await ids([{ resource: { resourceType: type, id: 'p2' } }]),
      ['OperationOutcome/'],
      `resourceType ${JSON.stringify(type)}: dropped`,
    );
  }
  t.same(await ids([{ resource: { id: 'p2' } }]), ['OperationOutcome/'], 'no resourceType: dropped');
  t.same(await ids([{ fullUrl: 'x', search: { mode: 'match' } }]), ['-/'], 'an entry without a resource passes');
  const bad = (body: string, why: string) => t.rejects(e.inflate(body, { guard }), { code: 'UPSTREAM_INVALID' }, why);
  await bad(
    '{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"subject":{"reference":"Patient/p2"}}}]}',
    'a repeated member',
  );
  await bad(
    '{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","subject":{"reference":"Patient/p1","reference":"Patient/p2"}}}]}',
    'a repeated reference',
  );
  await bad(
    '{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p1"},"resource":{"resourceType":"Patient","id":"p2"}}]}',
    'a repeated resource',
  );
  await bad('{"resourceType":"Patient","id":"p2"}', 'a root that is not a Bundle');
  await bad(
    '{"entry":[{"resource":{"resourceType":"Patient","id":"p2"}}],"resourceType":"Bundle"}',
    'a Bundle that says so after its entries',
  );
  await bad('{"resourceType":"Bundle","entry":[["x"]]}', 'an entry that is not an object');
  const shaped = JSON.parse(
    (
      await run(
        [{ resource: { resourceType: 'Patient', id: 'p1' }, response: { status: '200', outcome: { resourceType: 'Patient', id: 'p2' } } }],
        {
          extra: { resourceType: 'Patient', id: 'p2' },
          link: [{ relation: 'self', url: 'u', entry: [{ resource: { id: 'p2' } }] }],
        },
      )
    ).text,
  ) as Record<string, unknown>;
  t.equal(shaped['extra'], undefined, 'a member no Bundle has is left out');
  t.same(shaped['link'], [{ relation: 'self', url: 'u' }], 'so is one no link has');
  t.same((shaped['entry'] as { response: unknown }[])[0].response, { status: '200' }, 'response.outcome is left out');
  t.notMatch(JSON.stringify(shaped), /p2/);
  const oo = await run([{ resource: { resourceType: 'OperationOutcome', contained: [{ resourceType: 'Patient', id: 'p2' }], issue: [] } }]);
  t.notMatch(oo.text, /p2/, "an OperationOutcome's contained resources are left out");
});

t.test("a batch answer: each entry's Bundle is guarded by its own request entry's guard", async (t) => {
  const e = engine(t);
  const answer = JSON.stringify({
    resourceType: 'Bundle',
    type: 'batch-response',
    entry: [
      { resource: JSON.parse(bundle(obs('a', 'Patient/p'), obs('x1', 'Patient/p'), obs('b', 'Patient/p'))), response: { status: '200' } },
      // A read entry's answer is its resource: no guard, nothing held (its id would be dropped by one).
      { resource: { resourceType: 'Observation', id: 'x9' }, response: { status: '200' } },
      { resource: JSON.parse(bundle(obs('x2', 'Patient/p'))), response: { status: '200' } },
      { response: { status: '404', outcome: { resourceType: 'OperationOutcome', issue: [] } } },
    ],
  });
  const guards = new Map([
    [0, byId],
    [2, byId],
    [3, byId],
  ]);
  for (const cut of [65536, 7, 1]) {
    const { text } = await e.inflate(answer, { entryGuards: guards }, cut);
    const out = JSON.parse(text) as { entry: { resource?: { id?: string; entry?: Entry[] }; response: unknown }[] };
    const nested = (i: number) => out.entry[i].resource?.entry?.map((x) => x.resource?.['id'] ?? x.search?.mode);
    t.same(nested(0), ['a', 'b', 'outcome'], `entry 0 (cut ${cut})`);
    t.equal(out.entry[1].resource?.id, 'x9', 'an unguarded entry passes as it is');
    t.same(nested(2), ['outcome'], 'entry 2: all withheld');
    t.match(JSON.stringify(out.entry[2].resource), /1 entry was withheld/);
    t.same(out.entry[3].response, { status: '404', outcome: { resourceType: 'OperationOutcome', issue: [] } }, 'an error entry is intact');
    t.notMatch(text, /x1|x2/);
  }
  // The nested Bundle is shaped as one sent alone: members no Bundle has are left out.
  const shaped = JSON.stringify({
    resourceType: 'Bundle',
    type: 'batch-response',
    entry: [{ resource: { resourceType: 'Bundle', type: 'searchset', extra: { id: 'x3' }, entry: [] } }],
  });
  t.notMatch((await e.inflate(shaped, { entryGuards: guards })).text, /x3/, 'extra member of a nested Bundle');
  await t.rejects(
    e.inflate(
      JSON.stringify({ resourceType: 'Bundle', type: 'batch-response', entry: [{ resource: { resourceType: 'Patient', id: 'p' } }] }),
      {
        entryGuards: guards,
      },
    ),
    { code: 'UPSTREAM_INVALID' },
    "a guarded entry's answer that is not a Bundle",
  );
});
