// Attack 13c: a Bundle whose answer was lost learns, per blob, what its entry was written for
// (docs/operations.md: "A blob written inside a Bundle whose answer was lost ... learns its entry's
// request as its intent"), but only when the connection fails before the answer's head. When the
// upstream answers 200 and the body is cut midway, spoolBundleResponse throws past settle() and
// intend(): the blobs stay `pending` with no intent, and every sweep "keeps" them forever ("no
// record of what it was written for") — though the upstream holds the resource that refers to them.
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { HttpPendingLookup } from '../../src/binary/pending-lookup.js';
import { sweep } from '../../src/binary/sweeper.js';
import { FilesystemBlobStore } from '../../src/storage/filesystem.js';
import type { FhirUpstream } from '../../src/demo/fhir-upstream.js';
import { PDF, stack } from '../helpers/binary-stack.js';
import { defaultRetention } from '../helpers/retention.js';

/** `hours` on, moved to the middle of its hour: a sweep never starts in the last seconds of its period (it would stop at once). */
const later = (hours: number): Date => new Date(Math.floor((Date.now() + hours * 3_600_000) / 3_600_000) * 3_600_000 + 30 * 60_000);

/** Relays everything; a Bundle POST to the base gets the upstream's head and half its body, then the connection is cut. */
async function cuttingShim(t: Test, up: FhirUpstream): Promise<string> {
  const upstream = new URL(up.url);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const isBundle = req.method === 'POST' && /^\/fhir\/?(\?.*)?$/.test(req.url ?? '');
    const fwd = request(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host } },
      (answer) => {
        if (!isBundle) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const parts: Buffer[] = [];
        answer.on('data', (c: Buffer) => parts.push(c));
        answer.on('end', () => {
          const body = Buffer.concat(parts);
          const headers = { ...answer.headers, 'content-length': String(body.length) };
          delete headers['transfer-encoding'];
          res.writeHead(answer.statusCode ?? 502, headers);
          res.write(body.subarray(0, Math.floor(body.length / 2)));
          setTimeout(() => res.socket?.destroy(), 50);
        });
      },
    );
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`;
}

for (const type of ['transaction', 'batch'] as const) {
  t.test(`${type} answered 200 and cut midway: its blob learns its intent and is reconciled, not kept forever`, async (t) => {
    let direct = '';
    const s = await stack(t, {}, async (up) => {
      direct = up.url;
      return cuttingShim(t, up);
    });
    const r = await fetch(`${s.gw.base}/`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'application/fhir+json' },
      body: JSON.stringify({
        resourceType: 'Bundle',
        type,
        entry: [
          {
            resource: {
              resourceType: 'DocumentReference',
              status: 'current',
              identifier: [{ system: 'urn:a13c', value: `cut-${type}` }],
              content: [{ attachment: { contentType: 'application/pdf', data: PDF(70_000).toString('base64') } }],
            },
            request: { method: 'POST', url: 'DocumentReference' },
          },
        ],
      }),
    });
    const answer = await r.text().catch(() => '');
    t.comment(`client got ${r.status} ${answer.slice(0, 300)}`);
    t.equal(r.status, 502, "an answer lost on the way is the upstream's failure (502), not an internal error");
    const found = (await (await fetch(`${direct}/DocumentReference?identifier=urn:a13c|cut-${type}`)).json()) as {
      entry?: { resource: { id: string } }[];
    };
    t.equal(found.entry?.length, 1, 'the upstream holds the DocumentReference');
    const docId = found.entry![0].resource.id;

    const store = new FilesystemBlobStore({ directory: s.gw.blobDir });
    const items = (await store.list()).items;
    t.equal(items.length, 1, 'one blob stored');
    const blob = items[0];
    t.comment(JSON.stringify({ state: blob.state, intent: blob.intent, owner: blob.owner }));
    t.ok(blob.state === 'linked' || blob.intent === 'DocumentReference', 'linked, or pending with its entry’s intent');

    const spool = mkdtempSync(join(tmpdir(), 'fbg-a13c-spool-'));
    t.teardown(() => rmSync(spool, { recursive: true, force: true }));
    const at = later(2);
    const report = await sweep({
      store,
      upstream: new HttpPendingLookup({ base: direct, timeoutMs: 5000, rejectUnauthorized: true }),
      spoolDir: spool,
      retention: defaultRetention(),
      dryRun: false,
      holder: 'attack-13c',
      now: () => at,
    });
    t.same(report.kept, [], `nothing kept for want of an intent (report: ${JSON.stringify(report)})`);
    t.match(
      await store.head(blob.id),
      { state: 'linked', owner: `DocumentReference/${docId}` },
      'linked to the resource that refers to it',
    );
    const read = await fetch(`${s.gw.base}/DocumentReference/${docId}`, { headers: s.auth });
    t.ok((await read.text()).includes('"data":"JVBER'), 'the document the upstream holds reads its content');
  });
}
