import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import t from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import { DigestStream } from '../../src/storage/digest.js';

const sink = () => new Writable({ write: (_c, _e, cb) => cb() });

t.test('size, SHA-256 (hex) and SHA-1 (base64, as FHIR Attachment.hash) of what streamed through', async (t) => {
  const data = Buffer.from('%PDF-1.7 some bytes'.repeat(1000));
  const d = new DigestStream();
  const chunks = [data.subarray(0, 7), data.subarray(7, 4096), data.subarray(4096)];
  await pipeline(Readable.from(chunks), d, sink());
  t.same(d.digest, {
    size: data.length,
    sha256: createHash('sha256').update(data).digest('hex'),
    sha1: createHash('sha1').update(data).digest('base64'),
  });
});

t.test('passing maxBytes fails the stream with PAYLOAD_TOO_LARGE and no digest', async (t) => {
  const d = new DigestStream(10);
  const err = await pipeline(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), d, sink()).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof GatewayError, 'a GatewayError');
  t.equal((err as GatewayError).code, 'PAYLOAD_TOO_LARGE');
  t.equal(d.bytes, 12, 'counted up to the chunk that passed the limit');
  t.throws(() => d.digest, /before the stream ended/);
});

t.test('exactly maxBytes is allowed', async (t) => {
  const d = new DigestStream(12);
  await pipeline(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), d, sink());
  t.equal(d.digest.size, 12);
});
