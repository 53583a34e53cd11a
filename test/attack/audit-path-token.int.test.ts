// Attack 13c (class: audit record with a token / query string). A Binary request refused before it
// is classified is recorded with its path "without the query" — the text before a literal `?`. A
// query whose `?` was percent-encoded on the way (a client or proxy that encodes the whole URL,
// `/Binary/42%3Faccess_token%3D…`) or a matrix parameter (`/Binary/42;access_token=…`) is part of
// that path: the bearer token lands in the audit trail (and in AuditEvents posted to the FHIR server)
// — cut at 256 characters, which spares a long JWT's signature only by luck (an opaque token, a
// short JWT, is recorded whole).
import t from 'tap';
import { createdId, PDF, stack, upload } from '../helpers/binary-stack.js';

t.test('a token in an encoded query of a refused Binary request is not written to the audit trail', async (t) => {
  const s = await stack(t);
  const created = await upload(s, PDF(70_000), 'application/pdf');
  await created.arrayBuffer();
  const id = createdId(created);
  const token = s.auth.authorization.slice('Bearer '.length);
  for (const tail of [`%3Faccess_token%3D${token}`, `;access_token=${token}`]) {
    const r = await fetch(`${s.gw.base}/Binary/${id}${tail}`, { headers: { accept: 'application/pdf' } });
    await r.arrayBuffer();
    t.comment(`${tail.slice(0, 16)}…: ${r.status}`);
    await new Promise((res) => setTimeout(res, 300));
    const rec = s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === r.headers.get('x-request-id'));
    t.ok(rec, `${tail.slice(0, 16)}…: the refused Binary request is audited`);
    t.notOk(
      JSON.stringify(rec ?? {}).includes(token.split('.')[1].slice(0, 40)),
      `${tail.slice(0, 16)}…: its record carries no part of the token`,
    );
  }
});
