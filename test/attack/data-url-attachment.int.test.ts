// FINDING (attack round 5, content checks / budget / audit): an Attachment's content can be sent
// as a `data:` URL in `Attachment.url` (RFC 2397; a valid FHIR url) instead of `data`. The write
// direction looks only at `data`: the content is neither sniffed nor held to the type allow-list
// (text/html passes on a DocumentReference, whose list refuses it as `data`), nor externalized.
// The read direction keeps every `url` as it is: the content goes out past `_inflate=false` and
// `inflate.maxBytesPerResponse` ("a client never gets more attachment bytes than the budget,
// whoever stored them"), and no `what.inline` is noted — read through another request line
// (`Patient?_revinclude=DocumentReference:subject`) it leaves no audit record at all.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { stack } from '../helpers/binary-stack.js';
import { outcome } from './helpers.js';

const HTML = Buffer.from(`<html><body><script>fetch('/steal?'+document.cookie)</script>${'<p>x</p>'.repeat(2000)}</body></html>`);

t.test('content sent as a data: URL is held to the same checks, budget and audit as data', async (t) => {
  const s = await stack(t);
  const json = { ...s.auth, 'content-type': 'application/fhir+json' };
  const pat = await fetch(`${s.gw.base}/Patient`, { method: 'POST', headers: json, body: JSON.stringify({ resourceType: 'Patient' }) });
  const patient = ((await pat.json()) as { id: string }).id;

  // Control: the same HTML as `data` is refused.
  const asData = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: `Patient/${patient}` },
      content: [{ attachment: { contentType: 'text/html', data: HTML.toString('base64') } }],
    }),
  });
  t.same(await outcome(asData), [415, 'UNSUPPORTED_MEDIA'], 'control: text/html as data is refused');

  const url = `data:text/html;base64,${HTML.toString('base64')}`;
  const asUrl = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: json,
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      subject: { reference: `Patient/${patient}` },
      content: [{ attachment: { contentType: 'application/pdf', url } }],
    }),
  });
  const [status, code] = await outcome(asUrl);
  t.comment(`a data: URL attachment answered ${status} ${code ?? ''}`);
  t.not(status, 201, 'the HTML as a data: URL is not stored past the content check');

  // Read with inflation off: no attachment bytes should come back.
  const list = await fetch(`${s.gw.base}/DocumentReference?subject=Patient/${patient}&_inflate=false`, { headers: s.auth });
  const text = await list.text();
  t.notOk(text.includes(HTML.toString('base64').slice(0, 500)), '_inflate=false: no attachment content in the answer');

  // Reached through another request line: content went out, so there is a record saying so.
  const rev = await fetch(`${s.gw.base}/Patient?_id=${patient}&_revinclude=DocumentReference:subject`, { headers: s.auth });
  const revText = await rev.text();
  const reqId = rev.headers.get('x-request-id');
  await s.gw.accessLine(reqId);
  await new Promise((r) => setTimeout(r, 200));
  const rec = s.gw.logs.lines.find((l) => l['audit'] === 1 && l['reqId'] === reqId) as AuditRecord | undefined;
  t.comment(
    `revinclude carried the content: ${revText.includes(HTML.toString('base64').slice(0, 500))}; audit record: ${JSON.stringify(rec?.what)}`,
  );
  if (revText.includes(HTML.toString('base64').slice(0, 500))) t.ok(rec?.what.inline, 'content sent: an audit record notes it');
});
