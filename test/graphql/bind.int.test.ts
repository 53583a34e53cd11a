// createDocumentReference / createMedia (docs/graphql.md): uploaded files bound to a new resource,
// written with a Provenance in one transaction to Medplum's FHIR router, read back over REST.
import t, { type Test } from 'tap';
import { mintToken } from '../helpers/auth.js';
import { PDF, sha256, stack, type Stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { createHash } from 'node:crypto';
import { dicomFile } from '../helpers/dicom.js';
import { readRecord, relay } from '../helpers/lifecycle.js';

const UPLOAD = `mutation Up($file: Upload!, $type: String!, $for: String!) {
  uploadFile(forEntity: $for, data: $file, contentType: $type) { fileId storagePath url hashSha256 }
}`;

type Body = {
  data?: Record<string, Record<string, unknown> | null> | null;
  errors?: { message: string; extensions?: { code?: string } }[];
};

const tokenOf = async (s: Stack, sub: string, scope = 'user/*.cruds files.write fhir.write', extra: Record<string, unknown> = {}) => ({
  authorization: `Bearer ${await mintToken(s.key, { claims: { sub, scope, ...extra } })}`,
});

async function uploadFile(s: Stack, auth: Record<string, string>, file: Buffer, forEntity: string, type = 'application/pdf') {
  const form = new FormData();
  form.append('operations', JSON.stringify({ query: UPLOAD, variables: { file: null, type, for: forEntity } }));
  form.append('map', JSON.stringify({ 0: ['variables.file'] }));
  form.append('0', new Blob([file]), 'f');
  const r = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'graphql-require-preflight': '1' }, body: form });
  const body = (await r.json()) as Body;
  if (!body.data?.['uploadFile']) throw new Error(`upload: ${JSON.stringify(body)}`);
  return body.data['uploadFile'] as { fileId: string; storagePath: string; url: string; hashSha256: string };
}

async function gql(s: Stack, auth: Record<string, string>, query: string, variables: Record<string, unknown> = {}): Promise<Body> {
  const r = await fetch(`${s.gw.url}/graphql`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  return (await r.json()) as Body;
}

const CREATE_DOC = `mutation($r: JSON!) { createDocumentReference(resource: $r) { id meta { versionId } content { attachment { size hash contentType url } } provenance } }`;
const codeOf = (b: Body) => b.errors?.[0]?.extensions?.code;

const docWith = (url: string, extra: Record<string, unknown> = {}) => ({
  status: 'current',
  subject: { reference: 'Patient/123' },
  category: [{ coding: [{ system: 'http://loinc.org', code: '34133-9', display: 'Summary of episode note' }] }],
  content: [{ attachment: { title: 'Discharge Summary', url, creation: '2024-03-15', ...extra } }],
});

async function gqlStack(t: Test): Promise<Stack> {
  return stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
}

t.test(
  'upload a PDF → createDocumentReference: the resource and a Provenance from one transaction; REST reads the identical bytes',
  async (t) => {
    const s = await gqlStack(t);
    const alice = await tokenOf(s, 'alice', undefined, { fhirUser: 'Practitioner/456' });
    const pdf = PDF(250_000);
    const f = await uploadFile(s, alice, pdf, 'Patient/123');
    const before = s.up.requests.length;
    const created = await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath, { hash: `sha256:${f.hashSha256}` }) });
    t.notOk(created.errors, JSON.stringify(created.errors));
    const doc = created.data!['createDocumentReference']!;
    const sha1 = createHash('sha1').update(pdf).digest('base64');
    t.match(doc, {
      id: String,
      meta: { versionId: String },
      content: [{ attachment: { size: pdf.length, hash: sha1, contentType: 'application/pdf', url: /\$binary-access-read\?path=/ } }],
      provenance: String,
    });
    const sent = s.up.requests.slice(before);
    t.same(
      sent.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`),
      ['POST /fhir/'],
      'one write to the FHIR server: the transaction',
    );
    const held = (await (await fetch(`${s.up.url}/DocumentReference/${String(doc['id'])}`)).json()) as Record<string, unknown>;
    t.match(held, {
      subject: { reference: 'Patient/123' },
      content: [{ attachment: { size: pdf.length, hash: sha1, _data: { extension: [{ url: /blob-reference/ }] } } }],
    });
    t.notOk(JSON.stringify(held).includes('urn:fhir-binary-gateway:file:'), 'the storagePath is replaced by the blob reference');
    const prov = (await (await fetch(`${s.up.url}/Provenance/${String(doc['provenance'])}`)).json()) as Record<string, unknown>;
    t.match(prov, {
      target: [{ reference: `DocumentReference/${String(doc['id'])}` }],
      agent: [{ who: { reference: 'Practitioner/456' } }],
      activity: { coding: [{ code: 'CREATE' }] },
    });
    const back = await fetch(
      `${s.gw.base}/DocumentReference/${String(doc['id'])}/$binary-access-read?path=DocumentReference.content[0].attachment`,
      {
        headers: s.auth,
      },
    );
    t.equal(sha256(Buffer.from(await back.arrayBuffer())), sha256(pdf), 'REST read through the gateway: the identical bytes');
    const read = await fetch(`${s.gw.base}/DocumentReference/${String(doc['id'])}`, { headers: s.auth });
    const inlined = (await read.json()) as { content: { attachment: { data?: string } }[] };
    t.equal(
      sha256(Buffer.from(inlined.content[0].attachment.data ?? '', 'base64')),
      sha256(pdf),
      'a read of the resource inlines the content, as for one written over REST',
    );
    const info = await gql(s, alice, 'query($id: ID!) { file(fileId: $id) { state linkedTo } }', { id: f.fileId });
    t.same(info.data!['file'], { state: 'LINKED', linkedTo: `DocumentReference/${String(doc['id'])}` });

    // The upload's URL was named by the entity it was for; bound, the file is the DocumentReference's.
    const local = (url: string) => url.replace('http://gateway.test', s.gw.url);
    t.equal((await fetch(local(f.url))).status, 404, "the upload's URL ends when the file is bound");
    const REFRESH = 'mutation($id: ID!) { refreshFileUrl(fileId: $id, accessWindow: "5m") { url expiresAt } }';
    const refreshed = await gql(s, alice, REFRESH, { id: f.fileId });
    t.notOk(refreshed.errors, JSON.stringify(refreshed.errors));
    const renewed = refreshed.data!['refreshFileUrl'] as { url: string; expiresAt: string };
    t.match(renewed.url, `/_file/DocumentReference/${String(doc['id'])}/`, 'refreshFileUrl names the resource that holds the file');
    const viaUrl = await fetch(local(renewed.url));
    t.equal(viaUrl.status, 200);
    t.equal(sha256(Buffer.from(await viaUrl.arrayBuffer())), sha256(pdf), 'and serves the identical bytes, with no token');
    // The window starts at the URL's start, which is rounded down (docs/signed-urls.md).
    const left = Date.parse(renewed.expiresAt) - Date.now();
    t.ok(left > 3 * 60_000 && left <= 5 * 60_000, `for the window asked (${left} ms)`);
    const cannotRead = await gql(s, await tokenOf(s, 'alice', 'user/Patient.cruds files.write'), REFRESH, { id: f.fileId });
    t.equal(codeOf(cannotRead), 'INSUFFICIENT_SCOPE', "refused to the uploader once it may not read the resource's content");

    const again = await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath) });
    t.equal(codeOf(again), 'FILE_NOT_BINDABLE', 'an already linked file is refused');
    const audit = s.gw.logs.lines.find(
      (l) => l['audit'] === 1 && (l['what'] as { blobs?: { action: string }[] }).blobs?.some((b) => b.action === 'link'),
    );
    t.match(
      audit,
      { what: { blobs: [{ action: 'link', blob: f.fileId, resource: `DocumentReference/${String(doc['id'])}` }] } },
      'the link is audited',
    );
  },
);

t.test(
  'binding refusals: another principal, another subject, a wrong hash or type, no file, injected content; nothing is written',
  async (t) => {
    const s = await gqlStack(t);
    const alice = await tokenOf(s, 'alice');
    const bob = await tokenOf(s, 'bob');
    const pdf = PDF(60_000);
    const f = await uploadFile(s, alice, pdf, 'Patient/123');
    const writes = () => s.up.requests.filter((r) => r.method !== 'GET').length;
    const before = writes();
    t.equal(
      codeOf(await gql(s, bob, CREATE_DOC, { r: docWith(f.storagePath) })),
      'NOT_FOUND',
      "another caller's file is as absent as a missing one",
    );
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: { ...docWith(f.storagePath), subject: { reference: 'Patient/999' } } })),
      'FILE_NOT_BINDABLE',
      'uploaded for another entity',
    );
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath, { hash: `sha256:${'0'.repeat(64)}` }) })),
      'FILE_MISMATCH',
      'a wrong sha256',
    );
    t.equal(codeOf(await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath, { hash: 'AAAA' }) })), 'FILE_MISMATCH', 'a wrong R4 SHA-1');
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath, { contentType: 'image/png' }) })),
      'FILE_MISMATCH',
      'another type',
    );
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: docWith('https://example.org/x.pdf') })),
      'BAD_REQUEST',
      'a url that names no file',
    );
    t.equal(codeOf(await gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath, { data: 'AAAA' }) })), 'BAD_REQUEST', 'inline data');
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: { ...docWith(f.storagePath), author: [{ reference: 'Practitioner?name=x' }] } })),
      'BAD_REQUEST',
      'a conditional reference',
    );
    t.equal(
      codeOf(await gql(s, alice, CREATE_DOC, { r: { ...docWith(f.storagePath), contained: [{ resourceType: 'Binary' }] } })),
      'BAD_REQUEST',
      'contained resources',
    );
    t.equal(
      codeOf(
        await gql(s, alice, CREATE_DOC, {
          r: {
            ...docWith(f.storagePath),
            extension: [{ url: 'http://example.org/x', valueAttachment: { url: 'data:text/html,<script>x</script>' } }],
          },
        }),
      ),
      'BAD_REQUEST',
      'a data: URL anywhere',
    );
    t.equal(
      codeOf(
        await gql(s, alice, CREATE_DOC, {
          r: {
            ...docWith(f.storagePath),
            extension: [
              {
                url: 'http://example.org/x',
                valueAttachment: {
                  url: 'http://gateway.test/fhir/DocumentReference/other/$binary-access-read?path=DocumentReference.content%5B0%5D.attachment',
                },
              },
            ],
          },
        }),
      ),
      'BAD_REQUEST',
      "a link to another resource's stored content",
    );
    t.equal(
      codeOf(await gql(s, await tokenOf(s, 'alice', 'user/*.cruds files.write'), CREATE_DOC, { r: docWith(f.storagePath) })),
      'INSUFFICIENT_SCOPE',
      'without fhir.write',
    );
    t.equal(
      codeOf(await gql(s, await tokenOf(s, 'alice', 'user/*.rs files.write fhir.write'), CREATE_DOC, { r: docWith(f.storagePath) })),
      'INSUFFICIENT_SCOPE',
      'without create on DocumentReference',
    );
    const mp3 = await gql(s, alice, `mutation($r: JSON!) { createMedia(resource: $r) { id } }`, {
      r: { status: 'completed', subject: { reference: 'Patient/123' }, content: { url: f.storagePath } },
    });
    t.equal(codeOf(mp3), 'FILE_MISMATCH', 'a PDF was uploaded (and checked) to be bound to a DocumentReference, not a Media');
    t.match(mp3.errors?.[0]?.message, /createDocumentReference/);
    t.equal(writes(), before, 'nothing reached the FHIR server');

    // The literal form of the seed: an object literal in the document, not a variable.
    const literal = await gql(
      s,
      alice,
      `mutation { createDocumentReference(resource: { status: "current", subject: { reference: "Patient/123" }, content: [{ attachment: { title: "Scan", url: "${f.storagePath}" } }] }) { id content { attachment { size } } } }`,
    );
    t.match(
      literal.data,
      { createDocumentReference: { id: String, content: [{ attachment: { size: pdf.length } }] } },
      'an object literal',
    );
  },
);

t.test(
  "a DICOM file's height, width and frames land in the Media (with its modality and device); a header that disagrees is refused",
  async (t) => {
    const s = await gqlStack(t);
    const alice = await tokenOf(s, 'alice');
    const ct = dicomFile({
      rows: 512,
      columns: 512,
      frames: 120,
      modality: 'CT',
      serial: 'CT-Scanner-789',
      model: 'Scan 9000',
      pixelBytes: 400_000,
    });
    const f = await uploadFile(s, alice, ct, 'Patient/123', 'image/dicom');
    const media = (r: Record<string, unknown>) =>
      gql(s, alice, `mutation($r: JSON!) { createMedia(resource: $r) { id height width frames content { size contentType } } }`, { r });
    const base = { status: 'completed', subject: { reference: 'Patient/123' }, note: [{ text: 'Abdominal CT with contrast' }] };
    t.equal(
      codeOf(await media({ ...base, height: 256, content: { url: f.storagePath } })),
      'FILE_MISMATCH',
      'a height the header does not say',
    );
    const mr = { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'MR' }] };
    t.equal(
      codeOf(await media({ ...base, modality: mr, content: { url: f.storagePath } })),
      'FILE_MISMATCH',
      'a DICOM modality the header does not say',
    );
    const made = await media({ ...base, content: { contentType: 'image/dicom', url: f.storagePath } });
    t.notOk(made.errors, JSON.stringify(made.errors));
    t.match(made.data, { createMedia: { height: 512, width: 512, frames: 120, content: { size: ct.length, contentType: 'image/dicom' } } });
    const id = String(made.data!['createMedia']!['id']);
    const held = (await (await fetch(`${s.up.url}/Media/${id}`)).json()) as Record<string, unknown>;
    t.match(held, {
      height: 512,
      width: 512,
      frames: 120,
      modality: { coding: [{ system: 'http://dicom.nema.org/resources/ontology/DCM', code: 'CT' }] },
      device: { identifier: { value: 'CT-Scanner-789' }, display: 'Scan 9000' },
    });

    const fake = await fetch(`${s.gw.url}/graphql`, {
      method: 'POST',
      headers: { ...alice, 'graphql-require-preflight': '1' },
      body: (() => {
        const form = new FormData();
        form.append('operations', JSON.stringify({ query: UPLOAD, variables: { file: null, type: 'image/dicom', for: 'Patient/123' } }));
        form.append('map', JSON.stringify({ 0: ['variables.file'] }));
        form.append('0', new Blob([Buffer.concat([Buffer.alloc(128), Buffer.from('NOPE'), Buffer.alloc(2000, 1)])]), 'x.dcm');
        return form;
      })(),
    });
    t.equal(codeOf((await fake.json()) as Body), 'UNSUPPORTED_MEDIA', 'no DICM after the preamble: not DICOM');
  },
);

t.test("a patient's token binds files into its own patient's compartment only (subject and author)", async (t) => {
  const s = await gqlStack(t);
  const asUser = await tokenOf(s, 'guardian');
  const forOne = await uploadFile(s, asUser, PDF(30_000), 'Patient/1');
  const asTwo = await tokenOf(s, 'guardian', 'patient/*.cruds files.write fhir.write', { patient: '2' });
  const other = await gql(s, asTwo, CREATE_DOC, { r: { ...docWith(forOne.storagePath), subject: { reference: 'Patient/1' } } });
  t.equal(codeOf(other), 'INSUFFICIENT_SCOPE', "the same subject (sub) with patient 2's token cannot file for patient 1");
  const own = await uploadFile(s, asTwo, PDF(31_000), 'Patient/2');
  const author = await gql(s, asTwo, CREATE_DOC, {
    r: { ...docWith(own.storagePath), subject: { reference: 'Patient/2' }, author: [{ reference: 'Patient/999' }] },
  });
  t.equal(codeOf(author), 'INSUFFICIENT_SCOPE', "an author naming another patient would put it in that patient's compartment");
  const ok = await gql(s, asTwo, CREATE_DOC, {
    r: { ...docWith(own.storagePath), subject: { reference: 'Patient/2' }, author: [{ reference: 'Patient/2' }] },
  });
  t.notOk(ok.errors, JSON.stringify(ok.errors));
});

t.test('one bind of a file at a time; a bind the FHIR server refuses leaves the file an unbound upload, bindable again', async (t) => {
  const s = await gqlStack(t);
  const alice = await tokenOf(s, 'alice');
  const f = await uploadFile(s, alice, PDF(50_000), 'Patient/123');
  const both = await Promise.all([
    gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath) }),
    gql(s, alice, CREATE_DOC, { r: docWith(f.storagePath) }),
  ]);
  t.same(
    both.map((b) => (b.errors ? codeOf(b) : 'created')).sort(),
    ['FILE_NOT_BINDABLE', 'created'],
    'two at once: one binds, the other is refused',
  );
  const held = (await (await fetch(`${s.up.url}/DocumentReference`)).json()) as { entry?: unknown[] };
  t.equal(held.entry?.length ?? 0, 1, 'one DocumentReference holds the file');

  // The FHIR server refuses the next transaction (a relay in front of it answers 422).
  let refuseNext = false;
  const r = await stack(t, { graphql: { enabled: true } }, (up) =>
    relay(t, up.url, (req, res) => {
      if (!(refuseNext && req.method === 'POST' && /^\/fhir\/?$/.test(req.url ?? ''))) return undefined;
      refuseNext = false;
      req.resume();
      req.on('end', () => {
        res.writeHead(422, { 'content-type': 'application/fhir+json' });
        res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid' }] }));
      });
      return 'answered';
    }),
  );
  const bob = await tokenOf(r, 'bob');
  const g = await uploadFile(r, bob, PDF(51_000), 'Patient/123');
  refuseNext = true;
  const refused = await gql(r, bob, CREATE_DOC, { r: docWith(g.storagePath) });
  t.equal(codeOf(refused), 'BAD_REQUEST', 'the FHIR server refused the transaction');
  const record = readRecord(r.gw.blobDir, g.fileId);
  t.match(record, { state: 'pending', upload: { for: 'Patient/123' } });
  t.notOk('intent' in record, 'no intent left behind: the file keeps its temporary retention');
  const again = await gql(r, bob, CREATE_DOC, { r: docWith(g.storagePath) });
  t.notOk(again.errors, 'bindable again');
});
