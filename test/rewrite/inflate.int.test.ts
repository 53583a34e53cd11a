// The read direction through the running gateway against Medplum's FHIR router: stored attachments
// inflated within the budget, links past it (and they work), `_inflate`, per-rule toggles, inline
// data the upstream holds, Bundles of every kind, URL rewriting, XML, planted references.
import t from 'tap';
import { BLOB_EXTENSION_URL } from '../../src/fhir/blob-reference.js';
import { code, PDF, stack, type Stack } from '../helpers/binary-stack.js';

type Json = Record<string, any>;
const b64 = (b: Buffer) => b.toString('base64');
const post = (s: Stack, path: string, body: unknown) =>
  fetch(`${s.gw.base}/${path}`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify(body),
  });
const get = (s: Stack, path: string, headers: Record<string, string> = {}) =>
  fetch(`${s.gw.base}/${path}`, { headers: { ...s.auth, ...headers } });
const json = async (r: Response) => (await r.json()) as Json;
/** Writes straight to the upstream, around the gateway (data written before it, or by another path). */
const direct = async (s: Stack, path: string, body: unknown, method = 'POST') =>
  json(await fetch(`${s.up.url}/${path}`, { method, headers: { 'content-type': 'application/fhir+json' }, body: JSON.stringify(body) }));
const bytesOf = async (r: Response) => Buffer.from(await r.arrayBuffer());
/** The test gateway's publicBaseUrl: what links and rewritten URLs name. */
const PUBLIC = 'http://gateway.test/fhir';
const link = (type: string, id: string, path: string) => `${PUBLIC}/${type}/${id}/$binary-access-read?path=${encodeURIComponent(path)}`;
/** Follows a link the gateway wrote, at the address the test gateway really listens on. */
const follow = (s: Stack, url: string, headers: Record<string, string> = s.auth) => fetch(url.replace(PUBLIC, s.gw.base), { headers });

async function twoPdfs(s: Stack, a = PDF(100_000), b = PDF(120_000)) {
  const r = await post(s, 'DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', data: b64(a) } },
      { attachment: { contentType: 'application/pdf', data: b64(b) } },
    ],
  });
  t.equal(r.status, 201);
  const created = await json(r);
  return { id: created['id'] as string, a, b, created };
}

t.test('read, vread, search and history give the stored content back inline; our reference never reaches a client', async (t) => {
  const s = await stack(t);
  const { id, a, b, created } = await twoPdfs(s);
  t.ok(Buffer.from(created['content'][0].attachment.data, 'base64').equals(a), "the create's answer too");
  const upstreamHeld = await (await fetch(`${s.up.url}/DocumentReference/${id}`)).text();
  t.notOk(upstreamHeld.includes('"data"'), 'the upstream holds no data');
  for (const path of [`DocumentReference/${id}`, `DocumentReference/${id}/_history/1`]) {
    const r = await get(s, path);
    t.equal(r.status, 200, path);
    t.equal(r.headers.get('etag'), 'W/"1"', 'version headers pass');
    const text = await r.text();
    t.notOk(text.includes(BLOB_EXTENSION_URL), `${path}: no reference`);
    const doc = JSON.parse(text) as Json;
    t.ok(Buffer.from(doc['content'][0].attachment.data, 'base64').equals(a), `${path}: first`);
    t.ok(Buffer.from(doc['content'][1].attachment.data, 'base64').equals(b), `${path}: second`);
    t.equal(doc['content'][1].attachment.size, b.length);
  }
  for (const path of [`DocumentReference?_id=${id}`, `DocumentReference/${id}/_history`]) {
    const bundle = await json(await get(s, path));
    const entry = (bundle['entry'] as Json[]).find((e) => e['resource']?.id === id)!;
    t.ok(Buffer.from(entry['resource'].content[1].attachment.data, 'base64').equals(b), `${path}: inflated in the Bundle`);
  }
  t.notOk(
    s.up.requests.some((r) => r.url.includes('_inflate')),
    'nothing of ours reached the upstream',
  );
});

t.test('past inflate.maxBytesPerResponse: a link through the gateway, which serves the exact bytes', async (t) => {
  const s = await stack(t, { inflate: { maxBytesPerResponse: 150_000 } });
  const { id, a, b } = await twoPdfs(s);
  const doc = await json(await get(s, `DocumentReference/${id}`));
  t.ok(Buffer.from(doc['content'][0].attachment.data, 'base64').equals(a), 'the first fits');
  t.equal(doc['content'][1].attachment.data, undefined, 'the second does not');
  const url = doc['content'][1].attachment.url as string;
  t.equal(url, link('DocumentReference', id, 'DocumentReference.content[1].attachment'));
  t.ok((await bytesOf(await follow(s, url))).equals(b), 'the link serves the content');
  const anon = await follow(s, url, {});
  t.equal(anon.status, 401, 'and asks for the same token as any read');
  await anon.arrayBuffer();
  // A search of several: the budget is the response's, not each resource's.
  const second = await twoPdfs(s, PDF(20_000), PDF(20_000));
  const bundle = await json(await get(s, `DocumentReference?_id=${id},${second.id}`));
  let sent = 0;
  for (const e of bundle['entry'] as Json[])
    for (const c of e['resource'].content) sent += c.attachment.data ? Buffer.from(c.attachment.data, 'base64').length : 0;
  t.ok(sent <= 150_000, `${sent} bytes of attachment data in the Bundle`);
  t.ok(sent > 0);
});

t.test('_inflate: a client may ask for less, never more; the upstream never sees it', async (t) => {
  const s = await stack(t, { inflate: { maxBytesPerResponse: 150_000 } });
  const { id, a } = await twoPdfs(s);
  const off = await json(await get(s, `DocumentReference/${id}?_inflate=false`));
  t.same(
    off['content'].map((c: Json) => [c.attachment.data, typeof c.attachment.url]),
    [
      [undefined, 'string'],
      [undefined, 'string'],
    ],
    '_inflate=false: links only',
  );
  const less = await json(await get(s, `DocumentReference/${id}?_inflate=50000`));
  t.equal(less['content'][0].attachment.data, undefined, 'a smaller budget');
  const more = await json(await get(s, `DocumentReference/${id}?_inflate=99999999`));
  t.ok(Buffer.from(more['content'][0].attachment.data, 'base64').equals(a));
  t.equal(more['content'][1].attachment.data, undefined, 'asking for more than the policy gets the policy');
  const bad = await get(s, `DocumentReference/${id}?_inflate=lots`);
  t.equal(bad.status, 400);
  t.equal(await code(bad), 'BAD_REQUEST');
  const searched = await json(await get(s, `DocumentReference?_id=${id}&_inflate=false`));
  t.equal(searched['entry'][0].resource.content[0].attachment.data, undefined, 'on searches too');
  t.notOk(
    s.up.requests.some((r) => r.url.includes('_inflate')),
    'stripped before the upstream',
  );
});

t.test('per rule: inflation off for one resource type, on for the rest', async (t) => {
  const s = await stack(t, {
    rules: [
      { name: 'no-inflate-docs', match: { resourceTypes: ['DocumentReference'] }, require: { scopes: [] }, inflate: { enabled: false } },
    ],
  });
  const { id } = await twoPdfs(s);
  const doc = await json(await get(s, `DocumentReference/${id}`));
  t.equal(doc['content'][0].attachment.data, undefined);
  t.equal(doc['content'][0].attachment.url, link('DocumentReference', id, 'DocumentReference.content[0].attachment'));
  const png = PDF(90_000);
  const m = await json(
    await post(s, 'Observation', {
      resourceType: 'Observation',
      status: 'final',
      code: { text: 'scan' },
      valueAttachment: { contentType: 'application/pdf', data: b64(png) },
    }),
  );
  const obs = await json(await get(s, `Observation/${m['id']}`));
  t.ok(Buffer.from(obs['valueAttachment'].data, 'base64').equals(png), 'another type still inflates');
});

t.test('inline data the upstream already holds: within the budget as it is, past it a link that serves it', async (t) => {
  const s = await stack(t, { inflate: { maxBytesPerResponse: 1_000_000 } });
  const big = PDF(3_000_000);
  const small = PDF(5000);
  const held = await direct(s, 'DocumentReference', {
    resourceType: 'DocumentReference',
    status: 'current',
    content: [
      { attachment: { contentType: 'application/pdf', data: b64(small) } },
      { attachment: { contentType: 'application/pdf', data: b64(big) } },
    ],
  });
  const doc = await json(await get(s, `DocumentReference/${held['id']}`));
  t.ok(Buffer.from(doc['content'][0].attachment.data, 'base64').equals(small));
  t.equal(doc['content'][1].attachment.data, undefined, 'a client never receives more than the budget');
  t.ok((await bytesOf(await follow(s, doc['content'][1].attachment.url))).equals(big), 'followed: the inline content, streamed');
});

t.test('a stored Bundle: fullUrl and link move to the public base; its entries are its own', async (t) => {
  const s = await stack(t);
  const pdf = PDF(80_000);
  const r = await post(s, 'Bundle', {
    resourceType: 'Bundle',
    type: 'collection',
    link: [{ relation: 'self', url: `${s.up.url}/Bundle/abc` }],
    entry: [
      {
        fullUrl: `${s.up.url}/DocumentReference/x1`,
        resource: {
          resourceType: 'DocumentReference',
          id: 'x1',
          status: 'current',
          content: [{ attachment: { contentType: 'application/pdf', data: b64(pdf) } }],
        },
      },
    ],
  });
  t.equal(r.status, 201);
  const id = (await json(r))['id'];
  const bundle = await json(await get(s, `Bundle/${id}`));
  t.equal(bundle['entry'][0].fullUrl, `${PUBLIC}/DocumentReference/x1`);
  t.equal(bundle['link'][0].url, `${PUBLIC}/Bundle/abc`);
  t.ok(
    Buffer.from(bundle['entry'][0].resource.content[0].attachment.data, 'base64').equals(pdf),
    "a collection's blobs belong to the Bundle",
  );
  const linked = await json(await get(s, `Bundle/${id}?_inflate=false`));
  t.equal(linked['entry'][0].resource.content[0].attachment.url, link('Bundle', id, 'Bundle.entry[0].resource.content[0].attachment'));
  t.ok((await bytesOf(await follow(s, linked['entry'][0].resource.content[0].attachment.url))).equals(pdf), 'and its link serves it');
});

t.test('a batch of reads: every entry answered with a resource is inflated', async (t) => {
  const s = await stack(t);
  const { id, a } = await twoPdfs(s);
  const r = await post(s, '', {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [{ request: { method: 'GET', url: `DocumentReference/${id}` } }],
  });
  t.equal(r.status, 200);
  const bundle = await json(r);
  t.ok(Buffer.from(bundle['entry'][0].resource.content[0].attachment.data, 'base64').equals(a));
});

t.test('XML cannot be held to a budget: refused with 406 naming JSON; JSON by any name is fine', async (t) => {
  const s = await stack(t);
  const { id } = await twoPdfs(s);
  for (const [headers, q] of [
    [{ accept: 'application/fhir+xml' }, ''],
    [{}, '?_format=xml'],
    // JSON refused outright: the 406 too comes as XML (it came as JSON before the one Accept negotiation).
    [{ accept: 'application/fhir+xml, application/json;q=0' }, ''],
    [{ accept: 'application/fhir+xml, application/*;q=0' }, ''],
  ] as const) {
    const r = await get(s, `DocumentReference/${id}${q}`, headers);
    t.equal(r.status, 406);
    // The refusal itself comes in the format the client asked for.
    t.match(r.headers.get('content-type'), /fhir\+xml/);
    const body = await r.text();
    t.match(body, /NOT_ACCEPTABLE/);
    t.match(body, /application\/fhir\+json/);
  }
  for (const accept of ['application/json', 'application/fhir+xml;q=0.9, application/fhir+json', '*/*']) {
    const r = await get(s, `DocumentReference/${id}`, { accept });
    t.equal(r.status, 200, accept);
    t.match(r.headers.get('content-type'), /json/);
    await r.arrayBuffer();
  }
});

t.test('a reference planted in the upstream around the gateway reads nothing', async (t) => {
  const s = await stack(t);
  const { id } = await twoPdfs(s);
  const held = await json(await fetch(`${s.up.url}/DocumentReference/${id}`));
  const { id: _id, meta: _meta, ...copy } = held;
  const planted = await direct(s, 'DocumentReference', copy);
  const doc = await json(await get(s, `DocumentReference/${planted['id']}`));
  t.equal(doc['content'][0].attachment.data, undefined, 'the blob belongs to another resource');
  const followed = await follow(s, doc['content'][0].attachment.url);
  t.equal(followed.status, 500, 'and its link refuses too');
  t.equal(await code(followed), 'BLOB_UNREADABLE');
});

t.test('a transaction that creates: its answer carries the created resources, inflated or linked like any read', async (t) => {
  const s = await stack(t);
  const pdf = PDF(90_000);
  const tx = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      {
        request: { method: 'POST', url: 'DocumentReference' },
        resource: {
          resourceType: 'DocumentReference',
          status: 'current',
          content: [{ attachment: { contentType: 'application/pdf', data: b64(pdf) } }],
        },
      },
    ],
  };
  const r = await post(s, '', tx);
  t.equal(r.status, 200);
  const text = await r.text();
  t.notOk(text.includes(BLOB_EXTENSION_URL), 'no reference in the answer');
  const entry = (JSON.parse(text) as Json)['entry'][0];
  t.match(entry.response.status, /^201/);
  t.ok(Buffer.from(entry.resource.content[0].attachment.data, 'base64').equals(pdf), 'the created resource, inflated');
  const linked = await json(
    await fetch(`${s.gw.base}?_inflate=false`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify(tx),
    }),
  );
  const created = linked['entry'][0].resource;
  t.equal(
    created.content[0].attachment.url,
    link('DocumentReference', created.id, 'DocumentReference.content[0].attachment'),
    '_inflate=false: a link to the new resource',
  );
  t.ok((await bytesOf(await follow(s, created.content[0].attachment.url))).equals(pdf), 'which serves it');
});
