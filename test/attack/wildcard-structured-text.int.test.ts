// FINDING: the `image/*`, `audio/*`, `video/*` allow-list entries admit structured-syntax subtypes
// (`image/x+json`, `audio/x+json`, `video/x+xml`), and isTextual() (src/content/media-type.ts)
// treats every `+json`/`+xml` type as signature-less text: verdict() then accepts any UTF-8
// without NUL. So an HTML page (or any text document) is stored as an "image" under the default
// policy; the allow-list's intent (DocumentReference: images; Media: audio/video) is gone, and
// every consumer of the FHIR resource that trusts contentType's major type is misled.
import t from 'tap';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

const page = '<html><body><script>alert(document.cookie)</script></body></html>';

for (const declared of ['image/x+json', 'audio/x+json', 'video/x+xml']) {
  t.test(`an HTML page declared ${declared} is not stored as media`, async (t) => {
    const s = await stack(t);
    const r = await fetch(`${s.gw.base}/Binary`, { method: 'POST', headers: { ...s.auth, 'content-type': declared }, body: page });
    t.same(await outcome(r), [415, 'UNSUPPORTED_MEDIA'], 'refused: no image/audio/video signature');
    t.same(s.gw.blobFiles(), [], 'nothing stored');
  });
}
