// Attack 13: the admin API's checks.
import t from 'tap';
import type { AuditRecord } from '../../src/audit/record.js';
import { stack, uploadPdf } from '../helpers/binary-stack.js';
import { adminHeaders } from '../helpers/lifecycle.js';

const adminAudits = (lines: Record<string, unknown>[]) =>
  lines.filter((l) => l['audit'] === 1 && (l['who'] as { system?: string }).system === 'admin-api') as unknown as AuditRecord[];

t.test('link: "Binary/." is not a resource that refers to the blob (a dot segment makes the check a search of the type)', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const admin = await adminHeaders(s);
  const { id: binaryId, blob } = await uploadPdf(s);
  for (const resource of ['Binary/.', 'Binary/..']) {
    const r = await fetch(`${s.gw.url}/_admin/blobs/${blob}/link`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ resource }),
    });
    t.not(r.status, 200, `${resource}: not linked`);
    await r.arrayBuffer();
  }
  const read = await fetch(`${s.gw.base}/Binary/${binaryId}`, { headers: { ...s.auth, accept: 'application/pdf' } });
  t.equal(read.status, 200, 'the Binary that refers to it still reads its content');
  await read.arrayBuffer();
});

t.test('on its own listener, a percent-encoded /_admin path is refused like any other and audited', async (t) => {
  const s = await stack(t, { admin: { enabled: true, listen: { port: 0 } } });
  const { blob } = await uploadPdf(s);
  const r = await fetch(`${s.gw.adminUrl}/%5Fadmin/blobs/${blob}`);
  t.equal(r.status, 401, 'no token: 401 TOKEN_MISSING (not a 500 from a handler that ran without the checks)');
  await r.arrayBuffer();
  await new Promise((res) => setTimeout(res, 200));
  t.ok(
    adminAudits(s.gw.logs.lines).some((a) => a.status === r.status),
    'the call is an audit record ("every call, refused ones too")',
  );
});

t.test('the list call writes no query-string value into the audit record', async (t) => {
  const s = await stack(t, { admin: { enabled: true } });
  const admin = await adminHeaders(s, {});
  const secret = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.' + 'A'.repeat(2000);
  const r = await fetch(`${s.gw.url}/_admin/blobs?state=${secret}`, { headers: admin });
  t.equal(r.status, 400);
  await r.arrayBuffer();
  await new Promise((res) => setTimeout(res, 200));
  const rec = adminAudits(s.gw.logs.lines).find((a) => a.status === 400);
  t.ok(rec, 'audited');
  t.notOk(JSON.stringify(rec).includes('c2VjcmV0'), `no query-string value in it (change: ${String(rec?.what.change).slice(0, 60)}…)`);
});
