// FINDING (attack round 4 of issue 13, integrity; fixed: over HTTP/1.0 a rewritten answer is spooled and sent with its length): an inflated answer (attachment content streamed from the store into
// FHIR JSON) has no Content-Length; its only "this is not whole" signal when a chunk fails its
// digest midway is a cut chunked encoding. A client or reverse proxy speaking HTTP/1.0 to the
// gateway (nginx's default `proxy_http_version 1.0`) gets a close-delimited body: the cut IS the
// normal end of the body, so the truncated answer arrives as a complete 200 (and, with no
// Cache-Control — see inflated-answer-cache-control — may be cached as such). The raw and FHIR
// JSON views of a Binary are not affected: they carry Content-Length.
import { connect } from 'node:net';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { PDF, stack, type Stack } from '../helpers/binary-stack.js';

/** One HTTP/1.0 exchange over a raw socket: the head and the body exactly as they came, until the server closed. */
function http10(s: Stack, path: string): Promise<{ head: string; body: Buffer; endedCleanly: boolean }> {
  const u = new URL(`${s.gw.url}${new URL(s.gw.base).pathname}/${path}`);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const parts: Buffer[] = [];
    let clean = true;
    sock.on('data', (c: Buffer) => parts.push(c));
    sock.on('error', () => (clean = false));
    sock.on('close', (hadError) => {
      const all = Buffer.concat(parts);
      const at = all.indexOf('\r\n\r\n');
      resolve({ head: all.subarray(0, at).toString('latin1'), body: all.subarray(at + 4), endedCleanly: clean && !hadError });
    });
    sock.on('connect', () =>
      sock.write(`GET ${u.pathname}${u.search} HTTP/1.0\r\nHost: ${u.host}\r\nAuthorization: ${s.auth['authorization']}\r\n\r\n`),
    );
    setTimeout(() => reject(new Error('no answer')), 20_000).unref();
  });
}

t.test('an inflated answer cut by a failed chunk is distinguishable from a whole one, also over HTTP/1.0', async (t) => {
  const s = await stack(t, { defaultRule: { limits: { maxRequestBytes: 16 * 1024 * 1024 } } });
  const pdf = PDF(3 * CHUNK_BYTES + 1000);
  const r = await fetch(`${s.gw.base}/DocumentReference`, {
    method: 'POST',
    headers: { ...s.auth, 'content-type': 'application/fhir+json' },
    body: JSON.stringify({
      resourceType: 'DocumentReference',
      status: 'current',
      content: [{ attachment: { contentType: 'application/pdf', data: pdf.toString('base64') } }],
    }),
  });
  t.equal(r.status, 201);
  const id = ((await r.json()) as { id: string }).id;
  const held = (await (await fetch(`${s.up.url}/DocumentReference/${id}`)).json()) as {
    content: { attachment: { _data: { extension: unknown } } }[];
  };
  const blob = findBlobRef(held.content[0].attachment._data.extension)!.id;

  const whole = await http10(s, `DocumentReference/${id}`);
  t.match(whole.head, /^HTTP\/1\.1 200/, 'control: the intact document, 200');
  t.match(whole.head, new RegExp(`\\r\\ncontent-length: ${whole.body.length}\\r\\n`, 'i'), 'sent with its length');
  t.match(JSON.parse(whole.body.toString()), { content: [{ attachment: { data: pdf.toString('base64') } }] }, 'control: whole JSON');

  // A bit flipped in the third chunk of the stored content, behind the gateway's back.
  const file = join(s.gw.blobDir, blob.slice(0, 2), blob.slice(2, 4), `${blob}.blob`);
  const bytes = readFileSync(file);
  bytes[2 * CHUNK_BYTES + 7] ^= 0x04;
  writeFileSync(file, bytes);

  // HTTP/1.0 cannot say "cut" once a 200 is out: the answer is written in full before its head.
  const cut = await http10(s, `DocumentReference/${id}`);
  t.match(cut.head, /^HTTP\/1\.1 500/, 'an error, not a 200 that ends early');
  t.match(cut.head, /\r\ncontent-length: \d+/i);
  t.match(JSON.parse(cut.body.toString()), {
    resourceType: 'OperationOutcome',
    issue: [{ details: { coding: [{ code: 'BLOB_UNREADABLE' }] } }],
  });
  t.same(
    readdirSync(s.gw.spoolDir).filter((f) => f.startsWith('fbg-answer-')),
    [],
    'no spooled answer left behind',
  );
});
