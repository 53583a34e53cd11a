// A flipped bit in stored content, through the running gateway, on one store driver: never served
// in a complete answer — raw, ranged, the Binary's FHIR JSON view, inflated into a resource — and
// logged at error with the blob id (issue 13). Each driver's test file calls `integrityScenario`.
import { request } from 'node:http';
import type { Test } from 'tap';
import { findBlobRef } from '../../src/fhir/blob-reference.js';
import { CHUNK_BYTES } from '../../src/storage/chunks.js';
import { blobRefOf, createdId, PDF, stack, upload, type Stack } from './binary-stack.js';
import { eventually } from './poll.js';

export interface CorruptibleStore {
  /** The gateway's `storage` section. */
  readonly storage: Record<string, unknown>;
  /** Flips one bit of blob `id`'s stored content at decoded offset `at`, behind the gateway's back. */
  corrupt(id: string, at: number): Promise<void>;
}

interface Got {
  readonly status: number;
  readonly body: Buffer;
  /** The connection was cut before the body was complete. */
  readonly cut: boolean;
}

/** GET with node:http: what arrived, and whether the answer was cut (fetch hides how much came). */
function get(url: string, headers: Record<string, string>): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      const parts: Buffer[] = [];
      let cut = false;
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('aborted', () => (cut = true));
      res.on('error', () => (cut = true));
      res.on('close', () => {
        const body = Buffer.concat(parts);
        const length = Number(res.headers['content-length'] ?? NaN);
        resolve({ status: res.statusCode ?? 0, body, cut: cut || !res.complete || (!Number.isNaN(length) && body.length !== length) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

export function integrityScenario(t: Test, name: string, make: (t: Test) => Promise<CorruptibleStore>): void {
  t.test(`${name}: a flipped bit in stored content is never served in a complete answer`, async (t) => {
    const store = await make(t);
    const s: Stack = await stack(t, { storage: store.storage, defaultRule: { limits: { maxRequestBytes: 16 * 1024 * 1024 } } });
    const pdf = PDF(3 * CHUNK_BYTES + 1000);
    const errors = (blob: string) => s.gw.logs.lines.filter((l) => l['level'] === 'error' && l['blob'] === blob);

    const binary = async (): Promise<{ id: string; blob: string }> => {
      const r = await upload(s, pdf, 'application/pdf');
      await r.arrayBuffer();
      t.equal(r.status, 201);
      const id = createdId(r);
      return { id, blob: (await blobRefOf(s, id))!.id };
    };

    // Altered in its second chunk: what is sent before it is true, and the answer is never whole.
    const late = await binary();
    await store.corrupt(late.blob, CHUNK_BYTES + 5);
    const raw = await get(`${s.gw.base}/Binary/${late.id}`, s.auth);
    t.equal(raw.status, 200, 'raw: the head went out (the first chunk was sound)');
    t.ok(raw.cut, 'raw: the connection was cut');
    t.ok(raw.body.length <= CHUNK_BYTES, `raw: nothing from the altered chunk on (${raw.body.length} bytes)`);
    t.ok(raw.body.equals(pdf.subarray(0, raw.body.length)), 'raw: what came is the true content');
    const view = await get(`${s.gw.base}/Binary/${late.id}`, { ...s.auth, accept: 'application/fhir+json' });
    t.ok(view.cut, 'the FHIR JSON view: cut');
    const across = await get(`${s.gw.base}/Binary/${late.id}`, { ...s.auth, range: `bytes=${CHUNK_BYTES}-${CHUNK_BYTES + 99}` });
    t.same([across.status, across.cut], [500, false], 'a range over it: refused before the head');
    t.match(across.body.toString(), /BLOB_UNREADABLE/);
    const before = await get(`${s.gw.base}/Binary/${late.id}`, { ...s.auth, range: 'bytes=0-99' });
    t.same([before.status, before.cut], [206, false], 'a range before it is served');
    t.ok(before.body.equals(pdf.subarray(0, 100)));
    await eventually(() => errors(late.blob).length >= 3, 'an error line with the blob id per refused answer');
    t.notMatch(JSON.stringify(errors(late.blob)), /%PDF/, 'no content in the log');

    // Altered at its start: refused with an OperationOutcome, before any byte.
    const early = await binary();
    await store.corrupt(early.blob, 3);
    const refused = await get(`${s.gw.base}/Binary/${early.id}`, s.auth);
    t.same([refused.status, refused.cut], [500, false], 'raw: 500, not a cut 200');
    t.match(refused.body.toString(), /BLOB_UNREADABLE/);
    t.notMatch(refused.body.toString(), /%PDF/);

    // Inflated into a DocumentReference: a corrupt start gets a link instead; a corrupt middle cuts the answer.
    const doc = async (): Promise<{ id: string; blob: string }> => {
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
      return { id, blob: findBlobRef(held.content[0].attachment._data.extension)!.id };
    };
    const intact = await get(`${s.gw.base}/DocumentReference/${(await doc()).id}`, s.auth);
    t.match(JSON.parse(intact.body.toString()), { content: [{ attachment: { data: pdf.toString('base64') } }] }, 'control: inflated');
    const linked = await doc();
    await store.corrupt(linked.blob, 0);
    const withLink = await get(`${s.gw.base}/DocumentReference/${linked.id}`, s.auth);
    t.same([withLink.status, withLink.cut], [200, false], 'a corrupt start: the resource is answered');
    const attachment = (JSON.parse(withLink.body.toString()) as { content: { attachment: Record<string, unknown> }[] }).content[0]
      .attachment;
    t.equal(attachment['data'], undefined, 'without the content');
    t.match(attachment['url'], /\$binary-access-read/, 'with a link, which refuses on its own');
    await eventually(() => errors(linked.blob).length > 0, 'logged at error with the blob id');
    const cutDoc = await doc();
    await store.corrupt(cutDoc.blob, 2 * CHUNK_BYTES + 1);
    const cutRead = await get(`${s.gw.base}/DocumentReference/${cutDoc.id}`, s.auth);
    t.ok(cutRead.cut, 'a corrupt middle: the inflated answer is cut');
    t.throws(() => JSON.parse(cutRead.body.toString()), 'and is not valid JSON');
  });
}
