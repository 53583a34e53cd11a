// FINDING (medium, sixth outside check of issue 12): a FHIRPath Patch can set a conditional reference (`Patient?criteria`) past the patch
// guard (rewrite/patch-guard.ts), which refuses one only as a JSON `reference` member, a JSON Patch
// `…/reference` pointer, or a FHIRPath path ending in `.reference`. Two spellings it misses:
//  (a) `add` with path `Observation.subject`, name `reference`, valueString `Patient?…`;
//  (b) `add`/`replace` whose `value` is a complex value written as parts:
//      {name: value, part: [{name: reference, valueString: "Patient?…"}]}.
// HAPI applies both (FhirPatch) and then resolves the inline match URL like any write
// (allowInlineMatchUrlReferences): 400 for no match, 200 with the reference replaced for one.
// The front shim below plays that part of HAPI (resolution of the match URL with a search on the
// real upstream); every other request passes to the compartment shim and the Medplum upstream.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { startShim } from '../helpers/compartment-shim.js';
import { outcome } from './helpers.js';

type P = { name?: string; valueString?: string; part?: P[]; [k: string]: unknown };

/** HAPI's FHIRPath Patch + inline match URL resolution, just enough of it: PATCHes are resolved here, the rest forwarded. */
async function hapiPatchShim(t: { teardown(fn: () => unknown): void }, next: string, upUrl: string, seen: string[]): Promise<string> {
  const target = new URL(next);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      if (req.method === 'PATCH') {
        seen.push(body.toString());
        const params = JSON.parse(body.toString()) as { parameter?: P[] };
        const refs: string[] = [];
        const walk = (p: P) => {
          if (p.name === 'reference' && typeof p.valueString === 'string') refs.push(p.valueString);
          for (const q of p.part ?? []) walk(q);
          // `add … name=reference value=…`
          const parts = p.part ?? [];
          if (parts.some((q) => q.name === 'name' && q.valueString === 'reference')) {
            const v = parts.find((q) => q.name === 'value')?.valueString;
            if (v) refs.push(v);
          }
        };
        for (const p of params.parameter ?? []) walk(p);
        for (const ref of refs.filter((r) => r.includes('?'))) {
          const b = (await (await fetch(`${upUrl}/${ref}`)).json()) as { entry?: unknown[] };
          const n = (b.entry ?? []).length;
          if (n !== 1) {
            const text = JSON.stringify({
              resourceType: 'OperationOutcome',
              issue: [
                {
                  severity: 'error',
                  code: 'processing',
                  diagnostics: `Invalid match URL "${ref}" - ${n === 0 ? 'No' : 'Multiple'} resources match this search`,
                },
              ],
            });
            res.writeHead(n === 0 ? 400 : 412, { 'content-type': 'application/fhir+json' });
            res.end(text);
            return;
          }
        }
        const id = (req.url ?? '').split('?')[0].split('/').pop();
        const cur = await (await fetch(`${upUrl}/Observation/${id}`)).text();
        res.writeHead(200, { 'content-type': 'application/fhir+json' });
        res.end(cur);
        return;
      }
      const f = await fetch(`${target.origin}${req.url}`, {
        method: req.method,
        headers: Object.fromEntries(
          Object.entries(req.headers).filter(([k]) => k !== 'content-length' && k !== 'connection' && k !== 'host'),
        ) as Record<string, string>,
        ...(body.length ? { body } : {}),
      });
      const out = Buffer.from(await f.arrayBuffer());
      res.writeHead(f.status, { 'content-type': f.headers.get('content-type') ?? 'application/fhir+json' });
      res.end(out);
    })().catch((e: unknown) => {
      res.writeHead(500);
      res.end(String(e));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`;
}

t.test('FHIRPath Patch sets a conditional reference past the patch guard', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const seen: string[] = [];
  const front = await hapiPatchShim(t, await startShim(t, up.url), up.url, seen);
  const gw = await startTestGateway(t, { upstream: front, jwksUri: jwks.url });
  const post = async (r: Record<string, unknown>) =>
    (
      (await (
        await fetch(`${up.url}/${r.resourceType as string}`, {
          method: 'POST',
          headers: { 'content-type': 'application/fhir+json' },
          body: JSON.stringify(r),
        })
      ).json()) as { id: string }
    ).id;
  await post({ resourceType: 'Patient', name: [{ family: 'Secret' }], birthDate: '1970-01-01' });
  const obs = await post({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { display: 'someone' } });

  const h = {
    authorization: `Bearer ${await mintToken(key, { claims: { scope: 'user/Observation.ru' } })}`,
    'content-type': 'application/fhir+json',
  };
  const patch = (body: unknown, ct = 'application/fhir+json') =>
    fetch(`${gw.base}/Observation/${obs}`, { method: 'PATCH', headers: { ...h, 'content-type': ct }, body: JSON.stringify(body) });
  const op = (...part: P[]) => ({ resourceType: 'Parameters', parameter: [{ name: 'operation', part }] });

  t.equal((await fetch(`${gw.base}/Patient?birthdate=1970-01-01`, { headers: h })).status, 403, 'control: the token cannot search Patient');
  t.equal(
    (await patch([{ op: 'add', path: '/subject/reference', value: 'Patient?birthdate=1970-01-01' }], 'application/json-patch+json')).status,
    400,
    'control: JSON Patch …/reference refused by the gateway',
  );
  t.equal(
    (
      await patch(
        op(
          { name: 'type', valueCode: 'replace' },
          { name: 'path', valueString: 'Observation.subject' },
          {
            name: 'value',
            valueReference: { reference: 'Patient?birthdate=1970-01-01' },
          },
        ),
      )
    ).status,
    400,
    'control: FHIRPath valueReference refused by the gateway',
  );
  t.equal(seen.length, 0, 'control: nothing reached the upstream so far');

  // (a) add … name=reference
  const addName = (crit: string) =>
    op(
      { name: 'type', valueCode: 'add' },
      { name: 'path', valueString: 'Observation.subject' },
      { name: 'name', valueString: 'reference' },
      { name: 'value', valueString: `Patient?${crit}` },
    );
  const aHit = await outcome(patch(addName('birthdate=1970-01-01')));
  const aMiss = await outcome(patch(addName('birthdate=1980-01-01')));
  t.comment(`(a) hit ${aHit.join(' ')} / miss ${aMiss.join(' ')}`);
  // (b) value as parts
  const parts = (crit: string) =>
    op(
      { name: 'type', valueCode: 'replace' },
      { name: 'path', valueString: 'Observation.subject' },
      { name: 'value', part: [{ name: 'reference', valueString: `Patient?${crit}` }] },
    );
  const bHit = await outcome(patch(parts('birthdate=1970-01-01')));
  const bMiss = await outcome(patch(parts('birthdate=1980-01-01')));
  t.comment(`(b) hit ${bHit.join(' ')} / miss ${bMiss.join(' ')}`);
  t.comment(`PATCH bodies the upstream received: ${seen.length}`);
  t.same(aHit, [400, 'BAD_REQUEST'], `(a) add name=reference: refused by the gateway (got ${aHit.join(' ')})`);
  t.same(aMiss, [400, 'BAD_REQUEST'], `(a) no oracle: refused by the gateway, not the upstream's 400 (got ${aMiss.join(' ')})`);
  t.same(bHit, [400, 'BAD_REQUEST'], `(b) value parts: refused by the gateway (got ${bHit.join(' ')})`);
  t.same(bMiss, [400, 'BAD_REQUEST'], `(b) no oracle (got ${bMiss.join(' ')})`);
  t.equal(seen.length, 0, 'no patch carrying a conditional reference reached the upstream');
});
