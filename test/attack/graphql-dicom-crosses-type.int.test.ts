// FINDING (authorization / limits): uploadFile authorizes a file as "the type it binds to"
// (targetTypeOf: image/dicom → Media) — Media's gateway-upload rule and its size limit, SMART
// create on Media — but createDocumentReference binds it into a DocumentReference whenever
// DocumentReference's allow-list admits the type (the default `image/*` admits image/dicom). The
// DocumentReference upload rule's limit never sees the file: a 600 kB "DICOM" passes an operator's
// 100 kB limit for DocumentReference uploads, and lands in a DocumentReference without the DICOM
// header check createMedia does (only a DICM marker was ever checked).
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { pngOfAtLeast, stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';
import { codeOf, gqlJson, gqlUpload, storagePathOf } from '../helpers/graphql.js';

t.test('a file is bound only under the upload rule it was checked against', async (t) => {
  const s = await stack(t, {
    graphql: { enabled: true },
    signedUrls: signedUrlsConfig(urlKeys(t)),
    rules: [
      {
        name: 'document-uploads',
        match: { interactions: ['operation'], operations: ['gateway-upload'], resourceTypes: ['DocumentReference'] },
        limits: { maxRequestBytes: 100_000 },
      },
    ],
  });
  const auth = {
    authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write fhir.write' } })}`,
  };
  const upload = (contentType: string, body: Buffer) => gqlUpload(s, auth, body, { contentType });
  const big = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(600_000, 0x41)]);
  const png = await upload('image/png', pngOfAtLeast(600_000));
  t.equal(codeOf(png), 'PAYLOAD_TOO_LARGE', 'control: a 600 kB DocumentReference upload is past its 100 kB limit');
  const dicom = await upload('image/dicom', big);
  const created = await gqlJson(s, auth, 'mutation($r: JSON!) { createDocumentReference(resource: $r) { id } }', {
    r: { status: 'current', subject: { reference: 'Patient/1' }, content: [{ attachment: { url: storagePathOf(dicom) } }] },
  });
  t.ok(created.errors, 'the 600 kB file uploaded under the Media rule is not bound into a DocumentReference');
});
