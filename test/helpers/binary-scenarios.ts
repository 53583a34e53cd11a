// Raw Binary through the running gateway, against Medplum's router and one object-store driver on
// its real server. A driver's test file calls `binaryStoreScenarios(t, name, make)`; the
// filesystem store has its own, deeper file (test/binary.int.test.ts).
import { connect } from 'node:net';
import type { Test } from 'tap';
import { binaryPosts, blobRefOf, createdId, pngOfAtLeast, sha256, stack, upload, type Stack } from './binary-stack.js';
import { eventually } from './poll.js';
import { httpMessage, portOf } from './raw-http.js';

/** One driver, on a server of its own for this test. */
export interface StoreUnderTest {
  /** The gateway's `storage` section for it: driver, server, small parts, secrets by environment variable name. */
  readonly storage: Record<string, unknown>;
  /** The key prefix configured in `storage`. */
  readonly prefix: string;
  /** The part (S3) or block (Azure) size configured: content larger than this goes up in pieces. */
  readonly partSize: number;
  /** Everything the server holds, in any state: objects, in-progress multipart uploads, uncommitted blocks. */
  residue(): Promise<string[]>;
  /** The committed object (blob) names, as the server's own listing gives them. */
  objects(): Promise<string[]>;
  /** The metadata record the driver wrote for a blob, read straight from the server. */
  record(blobId: string): Promise<Record<string, unknown>>;
  /** How many parts (blocks) the blob's content was committed from. */
  parts(blobId: string): Promise<number>;
  /** Piecewise uploads begun so far, by anyone: CreateMultipartUpload requests, staged blocks. */
  piecesStarted(): number;
  /** Stops the server: from now on it refuses connections. */
  stop(): Promise<void>;
}

const MiB = 1024 * 1024;
/** Generous next to the second or two a driver needs to give up on an unreachable store; far below a client's patience. */
const STORE_DOWN_ANSWER_MS = 10_000;

/** Polls until `done` holds or `ms` pass; the caller asserts on the outcome. */
function until(done: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  return eventually(done, 'a store condition', ms, 25).then(
    () => true,
    () => false,
  );
}

/** The gateway on this store, with room for uploads several parts long. */
const gatewayOn = (t: Test, sut: StoreUnderTest, config: Record<string, unknown> = {}): Promise<Stack> =>
  stack(t, { storage: sut.storage, defaultRule: { limits: { maxRequestBytes: 64 * MiB } }, ...config });

type Outcome = { resourceType: string; issue: { code: string; details: { coding: { system: string; code: string }[] } }[] };

export function binaryStoreScenarios(t: Test, name: string, make: (t: Test) => Promise<StoreUnderTest>): void {
  t.test(
    `${name}: raw POST through the gateway; bytes, Range and the FHIR view read back; the object is linked to its Binary`,
    async (t) => {
      const sut = await make(t);
      const s = await gatewayOn(t, sut);
      const stored: string[] = [];
      for (const [what, png] of [
        ['a few hundred KiB', pngOfAtLeast(300 * 1024)],
        ['more than one part', pngOfAtLeast(sut.partSize + 100_000)],
      ] as const) {
        const created = await upload(s, png, 'image/png', { 'x-security-context': 'Patient/7' });
        t.equal(created.status, 201, `${what}: created`);
        await created.arrayBuffer();
        const id = createdId(created);
        const ref = await blobRefOf(s, id);
        t.equal(ref?.sha256, sha256(png), `${what}: the upstream's Binary refers to a blob with the content's hash`);
        const blob = ref?.id ?? '';
        stored.push(`${sut.prefix}blobs/${blob}`, `${sut.prefix}meta/${blob}.json`);

        t.match(
          await sut.record(blob),
          { id: blob, size: png.length, sha256: sha256(png), contentType: 'image/png', state: 'linked', owner: `Binary/${id}` },
          `${what}: the record in the store links the blob to Binary/${id}`,
        );
        if (png.length > sut.partSize)
          t.ok((await sut.parts(blob)) > 1, `${what}: committed from several parts (${await sut.parts(blob)})`);

        const raw = await fetch(`${s.gw.base}/Binary/${id}`, { headers: s.auth });
        t.equal(raw.status, 200, `${what}: raw read`);
        t.equal(raw.headers.get('content-type'), 'image/png');
        t.equal(raw.headers.get('content-length'), String(png.length));
        t.equal(raw.headers.get('etag'), 'W/"1"');
        t.equal(raw.headers.get('x-security-context'), 'Patient/7');
        t.equal(sha256(Buffer.from(await raw.arrayBuffer())), sha256(png), `${what}: byte-identical`);

        // Across the first part boundary where there is one.
        const start = Math.min(sut.partSize, Math.floor(png.length / 2)) - 100;
        const end = start + 199;
        const part = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, range: `bytes=${start}-${end}` } });
        t.equal(part.status, 206, `${what}: Range`);
        t.equal(part.headers.get('content-range'), `bytes ${start}-${end}/${png.length}`);
        t.equal(part.headers.get('content-length'), '200');
        t.ok(Buffer.from(await part.arrayBuffer()).equals(png.subarray(start, end + 1)), `${what}: exactly the slice asked for`);

        const fhir = await fetch(`${s.gw.base}/Binary/${id}`, { headers: { ...s.auth, accept: 'application/fhir+json' } });
        t.equal(fhir.status, 200, `${what}: FHIR read`);
        const resource = (await fhir.json()) as Record<string, unknown>;
        t.match(resource, { resourceType: 'Binary', id, contentType: 'image/png' });
        t.equal(resource._data, undefined, 'the internal reference is not shown');
        t.equal(sha256(Buffer.from(resource.data as string, 'base64')), sha256(png), `${what}: data is the content, base64`);
      }
      t.same(await sut.objects(), stored.sort(), 'the store holds the two blobs and their records, nothing else');
    },
  );

  t.test(
    `${name}: 415 for content that is not what it says, even when found out after parts were sent: nothing stored, nothing upstream`,
    async (t) => {
      const sut = await make(t);
      const s = await gatewayOn(t, sut);
      const before = await sut.residue();
      const big = pngOfAtLeast(2 * sut.partSize);
      const text = Buffer.concat([Buffer.alloc(2 * sut.partSize, 'plain text '), Buffer.from([0xc3, 0x28])]);
      for (const [what, body, type, why, reachedStore] of [
        // The sniff holds the first bytes back until it has decided: the store never sees them.
        ['PNG declared as PDF', big, 'application/pdf', /image\/png, declared as application\/pdf/, false],
        // Text is checked to its last byte, so most of it has gone up by the time it is refused.
        ['text whose last bytes are not UTF-8', text, 'text/plain', /not valid UTF-8/, true],
      ] as const) {
        const started = sut.piecesStarted();
        const r = await upload(s, body, type);
        t.equal(r.status, 415, what);
        const o = (await r.json()) as Outcome;
        t.equal(o.issue[0]?.details.coding[0]?.code, 'UNSUPPORTED_MEDIA', `${what}: code`);
        t.match(JSON.stringify(o), why, `${what}: says why`);
        t.equal(
          sut.piecesStarted() > started,
          reachedStore,
          `${what}: ${reachedStore ? 'refused after parts had gone up' : 'refused before any part went up'}`,
        );
        t.same(await sut.residue(), before, `${what}: nothing left in the store`);
      }
      t.equal(binaryPosts(s), 0, 'the upstream never saw a Binary');
    },
  );

  t.test(`${name}: 413 for a streamed body past the rule's limit, after parts were sent: nothing left in the store`, async (t) => {
    const sut = await make(t);
    const limit = Math.floor(1.5 * sut.partSize);
    const s = await gatewayOn(t, sut, {
      rules: [{ name: 'binaries', match: { resourceTypes: ['Binary'] }, limits: { maxRequestBytes: limit } }],
    });
    const before = await sut.residue();
    const started = sut.piecesStarted();
    const big = pngOfAtLeast(3 * sut.partSize);
    let at = 0;
    // Chunked, no Content-Length: only counting can stop it. Pulled, so the client sends as the gateway reads.
    const r = await fetch(`${s.gw.base}/Binary`, {
      method: 'POST',
      headers: { ...s.auth, 'content-type': 'image/png' },
      body: new ReadableStream({
        pull(c) {
          if (at >= big.length) return c.close();
          c.enqueue(big.subarray(at, (at += 64 * 1024)));
        },
      }),
      duplex: 'half',
    });
    t.equal(r.status, 413);
    t.equal(((await r.json()) as Outcome).issue[0]?.details.coding[0]?.code, 'PAYLOAD_TOO_LARGE');
    t.ok(sut.piecesStarted() > started, 'the limit was hit after a piecewise upload had begun');
    t.same(await sut.residue(), before, 'no object, no pending upload, no uncommitted block');
    t.equal(binaryPosts(s), 0);
  });

  t.test(`${name}: a client that disconnects midway through a large upload leaves nothing behind`, async (t) => {
    const sut = await make(t);
    const s = await gatewayOn(t, sut);
    const before = await sut.residue();
    const big = pngOfAtLeast(3 * sut.partSize);
    const sock = connect(portOf(s.gw.url), '127.0.0.1');
    t.teardown(() => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      httpMessage([
        'POST /fhir/Binary HTTP/1.1',
        'Host: x',
        `Authorization: ${s.auth.authorization}`,
        'Content-Type: image/png',
        `Content-Length: ${big.length}`,
      ]),
    );
    sock.write(big.subarray(0, 2 * sut.partSize));
    t.ok(await until(async () => (await sut.residue()).length > before.length), 'the upload was in progress in the store');
    sock.destroy();
    t.ok(await until(async () => JSON.stringify(await sut.residue()) === JSON.stringify(before)), 'everything it had written is gone');
    t.same(await sut.residue(), before);
    t.equal(binaryPosts(s), 0);
  });

  t.test(`${name}: the store down → 503 STORAGE_UNAVAILABLE as an OperationOutcome; nothing reaches the upstream`, async (t) => {
    const sut = await make(t);
    const s = await gatewayOn(t, sut);
    const kept = await upload(s, pngOfAtLeast(100_000), 'image/png');
    t.equal(kept.status, 201, 'the store works before it goes down');
    await kept.arrayBuffer();
    const posts = binaryPosts(s);
    await sut.stop();

    const body = pngOfAtLeast(sut.partSize + 100_000);
    let asked = Date.now();
    const r = await upload(s, body, 'image/png');
    let took = Date.now() - asked;
    t.equal(r.status, 503);
    // Retries are for a blip, not for an outage: the client must not hang on a store that is gone.
    t.ok(took < STORE_DOWN_ANSWER_MS, `answered in ${took} ms`);
    t.match(r.headers.get('content-type'), /^application\/fhir\+json/);
    t.match(await r.json(), {
      resourceType: 'OperationOutcome',
      issue: [
        {
          severity: 'error',
          code: 'transient',
          details: { coding: [{ system: 'urn:fhir-binary-gateway:error', code: 'STORAGE_UNAVAILABLE' }] },
        },
      ],
    });
    t.equal(binaryPosts(s), posts, 'the upstream was not told of a Binary');
    // The operator learns why, with the request id; the client only the kind.
    const why = await s.gw
      .accessLine(r.headers.get('x-request-id'))
      .then(() => s.gw.logs.lines.find((l) => l['msg'] === 'request failed: a dependency' && l['reqId'] === r.headers.get('x-request-id')));
    t.match(why, { level: 'warn', code: 'STORAGE_UNAVAILABLE', cause: /\w/ }, 'the cause is logged');

    asked = Date.now();
    const read = await fetch(`${s.gw.base}/Binary/${createdId(kept)}`, { headers: s.auth });
    took = Date.now() - asked;
    t.equal(read.status, 503, 'a read of stored content fails the same way');
    t.ok(took < STORE_DOWN_ANSWER_MS, `answered in ${took} ms`);
    t.equal(((await read.json()) as Outcome).issue[0]?.details.coding[0]?.code, 'STORAGE_UNAVAILABLE');
  });
}
