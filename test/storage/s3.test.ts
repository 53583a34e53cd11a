import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import { eventually } from '../helpers/poll.js';
import { MISSING, UNREADABLE } from '../helpers/store-errors.js';
import { S3BlobStore, type S3StoreOptions } from '../../src/storage/s3.js';
import { startS3Server, type S3Server, type SeenRequest } from '../helpers/s3-server.js';
import { blobStoreContract, chunked, failingBody } from './contract.js';

const MiB = 1024 * 1024;
// The smallest part S3 allows, so the contract's 6 MiB blobs go through multipart uploads
// (and their aborts), not just single PUTs.
const PART = 5 * MiB;

function storeOn(srv: S3Server, options: Partial<S3StoreOptions> = {}, client?: S3Client): S3BlobStore {
  return new S3BlobStore(
    {
      bucket: srv.bucket,
      region: 'us-east-1',
      endpoint: srv.endpoint,
      forcePathStyle: true,
      credentials: srv.credentials,
      partSizeBytes: PART,
      ...options,
    },
    client,
  );
}

function rawClient(t: Test, srv: S3Server): S3Client {
  const client = new S3Client({ region: 'us-east-1', endpoint: srv.endpoint, forcePathStyle: true, credentials: srv.credentials });
  t.teardown(() => client.destroy());
  return client;
}

const prefix = (): string => `gw-${randomBytes(4).toString('hex')}/`;

async function until(t: Test, what: string, done: () => boolean): Promise<void> {
  t.ok(await eventually(done, what, 10_000).catch(() => false), what);
}

/** Requests that wrote `key`: a PUT without uploadId, or a CreateMultipartUpload. */
function creates(srv: S3Server, key: string): SeenRequest[] {
  const path = `/${srv.bucket}/${key}`;
  return srv.requests.filter(
    (r) => r.path === path && ((r.method === 'PUT' && r.query.uploadId === undefined) || (r.method === 'POST' && 'uploads' in r.query)),
  );
}

const signedHeaders = (r: SeenRequest): string[] => /SignedHeaders=([^,]+)/.exec(String(r.headers.authorization))?.[1].split(';') ?? [];

blobStoreContract(t, 's3', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const client = rawClient(t, srv);
  return {
    store: storeOn(srv, { prefix: p }),
    residue: async () => srv.files(),
    corrupt: async (id, at) => {
      const Key = `${p}blobs/${id}`;
      const got = await client.send(new GetObjectCommand({ Bucket: srv.bucket, Key }));
      const b = Buffer.from(await got.Body!.transformToByteArray());
      b[at] ^= 0x04;
      await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key, Body: b }));
    },
  };
});

t.test('s3: layout: content at <prefix>blobs/<id> with its content type, the record at <prefix>meta/<id>.json', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const store = storeOn(srv, { prefix: p });
  const info = await store.put(chunked(Buffer.from('%PDF-1.4 x')), { contentType: 'application/pdf', owner: 'Binary/7' });
  const client = rawClient(t, srv);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: srv.bucket }));
  t.same((listed.Contents ?? []).map((o) => o.Key).sort(), [`${p}blobs/${info.id}`, `${p}meta/${info.id}.json`]);
  t.equal((await client.send(new HeadObjectCommand({ Bucket: srv.bucket, Key: `${p}blobs/${info.id}` }))).ContentType, 'application/pdf');
  const record = await client.send(new GetObjectCommand({ Bucket: srv.bucket, Key: `${p}meta/${info.id}.json` }));
  t.equal(record.ContentType, 'application/json');
  t.match(JSON.parse((await record.Body?.transformToString()) ?? '') as unknown, {
    v: 1,
    id: info.id,
    size: 10,
    state: 'pending',
    owner: 'Binary/7',
    contentType: 'application/pdf',
  });
});

t.test('s3: SigV4 is checked: a wrong secret key is refused and stores nothing', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const good = storeOn(srv, { prefix: p });
  const existing = await good.put(chunked(Buffer.from('stored with the right key')), { contentType: 'text/plain' });
  const before = srv.files();
  const seen = srv.requests.length;

  const bad = storeOn(srv, { prefix: p, credentials: { accessKeyId: srv.credentials.accessKeyId, secretAccessKey: 'not-the-secret' } });
  // 20 MiB: more than the upload reads before S3's refusal stops it.
  for (const size of [100, 20 * MiB]) {
    const body = chunked(randomBytes(size));
    await t.rejects(bad.put(body, { contentType: 'text/plain' }), { name: 'SignatureDoesNotMatch' }, `put of ${size} bytes refused`);
    t.ok(body.destroyed, 'the body is not left half-read');
  }
  t.same(srv.files(), before, 'nothing stored');
  await t.rejects(bad.head(existing.id), { name: 'SignatureDoesNotMatch' }, 'a refused read is an error, not "absent"');
  await t.rejects(bad.get(existing.id), { name: 'SignatureDoesNotMatch' });
  const refused = srv.requests.slice(seen);
  t.ok(refused.length >= 3, 'the server saw the requests');
  t.ok(
    refused.every((r) => r.status === 403 && !r.authenticated && signedHeaders(r).length > 0),
    'each was signed, and each was refused',
  );
  t.equal(
    await (await good.get(existing.id)).body.toArray().then((c) => Buffer.concat(c as Buffer[]).toString()),
    'stored with the right key',
    'the right key still reads',
  );
});

t.test('s3: serverSideEncryption and the KMS key id reach the server, signed, on content and record', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const store = storeOn(srv, { prefix: p, serverSideEncryption: 'aws:kms', sseKmsKeyId: 'alias/fhir-blobs' });
  const small = await store.put(chunked(Buffer.from('small')), { contentType: 'text/plain' });
  const large = await store.put(chunked(randomBytes(6 * MiB)), { contentType: 'application/pdf' });
  for (const [what, key, type] of [
    ['single-part content', `${p}blobs/${small.id}`, 'text/plain'],
    ['multipart content', `${p}blobs/${large.id}`, 'application/pdf'],
    ['record', `${p}meta/${small.id}.json`, 'application/json'],
    ['record', `${p}meta/${large.id}.json`, 'application/json'],
  ] as const) {
    const [req, ...more] = creates(srv, key);
    t.equal(more.length, 0, `${what}: created once`);
    t.match(
      req,
      {
        status: 200,
        authenticated: true,
        headers: {
          'x-amz-server-side-encryption': 'aws:kms',
          'x-amz-server-side-encryption-aws-kms-key-id': 'alias/fhir-blobs',
          'content-type': type,
        },
      },
      what,
    );
    t.ok(
      signedHeaders(req).includes('x-amz-server-side-encryption') &&
        signedHeaders(req).includes('x-amz-server-side-encryption-aws-kms-key-id'),
      `${what}: SSE headers are signed`,
    );
  }
  t.ok(
    srv.requests.some((r) => r.method === 'POST' && 'uploads' in r.query),
    'the large blob went through a multipart upload',
  );

  const plain = storeOn(srv, { prefix: prefix() });
  const info = await plain.put(chunked(Buffer.from('plain')), { contentType: 'text/plain' });
  const [req] = srv.requests.filter((r) => r.path.endsWith(`/blobs/${info.id}`) && r.method === 'PUT');
  t.equal(req.headers['x-amz-server-side-encryption'], undefined, 'no SSE header unless configured');
});

t.test("s3: a listing from an id is S3's StartAfter on its first page: no record before it is read", async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const store = storeOn(srv, { prefix: p });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await store.put(chunked(Buffer.from(`b${i}`)), { contentType: 'text/plain' })).id);
  ids.sort();
  const seen = srv.requests.length;
  const first = await store.list({ from: ids[2], limit: 2 });
  t.same(
    first.items.map((i) => i.id),
    ids.slice(2, 4),
  );
  const rest = await store.list({ from: ids[2], limit: 2, cursor: first.cursor! });
  t.same(
    rest.items.map((i) => i.id),
    ids.slice(4),
  );
  const made = srv.requests.slice(seen);
  const lists = made.filter((r) => r.query['list-type'] === '2');
  t.equal(lists[0]?.query['start-after'], `${p}meta/${ids[2]}`, 'the first page starts after the key just before it');
  t.equal(lists[1]?.query['start-after'], undefined, 'the next page goes on from its continuation token');
  for (const id of ids.slice(0, 2))
    t.notOk(
      made.some((r) => r.path.endsWith(`/meta/${id}.json`)),
      `the record of ${id.slice(0, 8)} (before it) was never read`,
    );
});

t.test('s3: a prefix keeps two stores in one bucket apart', async (t) => {
  const srv = await startS3Server(t);
  const a = storeOn(srv, { prefix: 'tenant-a/' });
  const b = storeOn(srv, { prefix: 'tenant-b/' });
  const none = storeOn(srv);
  const ia = await a.put(chunked(Buffer.from('a')), { contentType: 'text/plain' });
  const ib = await b.put(chunked(Buffer.from('b')), { contentType: 'text/plain' });
  t.same(
    (await a.list()).items.map((i) => i.id),
    [ia.id],
  );
  t.same(
    (await b.list()).items.map((i) => i.id),
    [ib.id],
  );
  t.same((await none.list()).items, [], 'no prefix does not mean every prefix');
  await t.rejects(b.get(ia.id), MISSING);
  t.equal(await b.head(ia.id), undefined);
  await t.rejects(b.setMeta(ia.id, { state: 'linked' }), MISSING);
  await b.delete(ia.id);
  t.equal((await a.head(ia.id))?.id, ia.id, "b's delete did not touch a's blob");
  t.ok(
    srv.files().every((f) => f.startsWith(`${srv.bucket}/tenant-a/`) || f.startsWith(`${srv.bucket}/tenant-b/`)),
    'every object is under one of the prefixes',
  );
});

t.test('s3: PAYLOAD_TOO_LARGE after parts were uploaded aborts the multipart upload', async (t) => {
  const srv = await startS3Server(t);
  const store = storeOn(srv, { prefix: prefix() });
  const data = randomBytes(12 * MiB);
  const err = await store.put(chunked(data, [MiB]), { contentType: 'application/pdf' }, { maxBytes: 11 * MiB }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof GatewayError && err.code === 'PAYLOAD_TOO_LARGE', 'the size error, not an S3 one');
  t.ok(
    srv.requests.some((r) => r.method === 'PUT' && r.query.partNumber === '1' && r.status === 200),
    'a part had been uploaded',
  );
  t.ok(
    srv.requests.some((r) => r.method === 'DELETE' && typeof r.query.uploadId === 'string' && r.status === 204),
    'the multipart upload was aborted',
  );
  t.same(srv.files(), [], 'nothing left: no object, no parts');
});

t.test('s3: an abort while a multipart upload is open aborts it and leaves nothing', async (t) => {
  const srv = await startS3Server(t);
  const store = storeOn(srv, { prefix: prefix() });
  const body = new Readable({ read() {} });
  body.push(randomBytes(6 * MiB));
  const ac = new AbortController();
  const p = store.put(body, { contentType: 'application/pdf' }, { signal: ac.signal });
  await until(t, 'part 1 reached the server', () => srv.requests.some((r) => r.method === 'PUT' && r.query.partNumber === '1'));
  t.ok(
    srv.files().some((f) => f.includes('._S3rver_uploads')),
    'an open upload holds parts on the server',
  );
  ac.abort();
  await t.rejects(p, { name: 'AbortError' });
  t.ok(body.destroyed, 'the body is not left half-read');
  t.same(srv.files(), [], 'nothing left');
});

t.test('s3: a record that cannot be written takes the uploaded content with it', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const client = rawClient(t, srv);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const key = (args.input as { Key?: string }).Key ?? '';
      if (context.commandName === 'PutObjectCommand' && key.endsWith('.json')) throw new Error('record write failed');
      return next(args);
    },
    { step: 'initialize' },
  );
  const store = storeOn(srv, { prefix: p }, client);
  for (const size of [1000, 6 * MiB]) {
    await t.rejects(store.put(chunked(randomBytes(size)), { contentType: 'text/plain' }), /record write failed/, `${size} bytes`);
  }
  t.ok(
    srv.requests.some((r) => r.method === 'DELETE' && r.path.includes(`/${p}blobs/`) && r.status === 204),
    'the content was deleted',
  );
  t.same(srv.files(), [], 'nothing left');
});

t.test('s3: when cleaning up fails too, the put still rejects with what went wrong first', async (t) => {
  const srv = await startS3Server(t);
  const client = rawClient(t, srv);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'AbortMultipartUploadCommand' || context.commandName === 'DeleteObjectCommand')
        throw new Error('cleanup failed');
      return next(args);
    },
    { step: 'initialize' },
  );
  const store = storeOn(srv, { prefix: prefix() }, client);
  await t.rejects(store.put(failingBody(randomBytes(6 * MiB)), { contentType: 'application/pdf' }), /client went away/);
  t.ok(
    srv.files().some((f) => f.includes('._S3rver_uploads')),
    'the open upload is still there (for a bucket lifecycle rule to abort), so cleanup really did fail',
  );
});

t.test('s3: content that does not match its record is refused, never served', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const store = storeOn(srv, { prefix: p });
  const info = await store.put(chunked(Buffer.from('the original content')), { contentType: 'text/plain' });
  await rawClient(t, srv).send(new PutObjectCommand({ Bucket: srv.bucket, Key: `${p}blobs/${info.id}`, Body: 'swapped' }));
  await t.rejects(store.get(info.id), UNREADABLE, 'whole blob');
  await t.rejects(store.get(info.id, { start: 10, end: 19 }), UNREADABLE, 'a range the object does not have');
  await t.rejects(store.get(info.id, { start: 0, end: 6 }), UNREADABLE, 'a range it has: the object is still not this blob');
  t.equal((await store.head(info.id))?.sha256, info.sha256, 'the record itself still reads');
});

t.test('s3: a missing bucket is an error, not a missing blob', async (t) => {
  const srv = await startS3Server(t);
  const store = storeOn(srv, { bucket: 'no-such-bucket' });
  await t.rejects(store.head('0123456789abcdef0123456789abcdef'), { name: 'NoSuchBucket' });
  await t.rejects(store.get('0123456789abcdef0123456789abcdef'), { name: 'NoSuchBucket' });
});

t.test('s3: malformed ids never reach S3', async (t) => {
  const srv = await startS3Server(t);
  const store = storeOn(srv);
  const seen = srv.requests.length;
  for (const id of ['../meta/x', 'A', '', 'a/b']) {
    t.equal(await store.head(id), undefined);
    await store.delete(id);
  }
  t.equal(srv.requests.length, seen, 'no request sent');
});

t.test('s3: a part size below the S3 minimum is refused at construction', async (t) => {
  t.throws(() => new S3BlobStore({ bucket: 'b', partSizeBytes: MiB }), RangeError);
});

t.test('s3: a range of a blob recorded before chunk digests is served from the object its check read, never a replacement', async (t) => {
  const srv = await startS3Server(t);
  const p = prefix();
  const client = rawClient(t, srv);
  const store = storeOn(srv, { prefix: p });
  const data = randomBytes(600_000);
  const { id } = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const metaKey = `${p}meta/${id}.json`;
  const rec = JSON.parse(
    await (await client.send(new GetObjectCommand({ Bucket: srv.bucket, Key: metaKey }))).Body!.transformToString(),
  ) as Record<string, unknown>;
  delete rec['chunks'];
  await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: metaKey, Body: JSON.stringify(rec) }));
  t.ok(
    (await bytes((await store.get(id, { start: 10, end: 20 })).body)).equals(data.subarray(10, 21)),
    'control: a range, checked whole first',
  );

  // The object replaced after the whole read that checked it, before the range is read.
  const spied = store as unknown as { fetch: (...a: unknown[]) => Promise<Readable> };
  const fetch = spied.fetch.bind(store);
  let calls = 0;
  spied.fetch = async (...a) => {
    if (++calls === 2)
      await client.send(new PutObjectCommand({ Bucket: srv.bucket, Key: `${p}blobs/${id}`, Body: Buffer.alloc(data.length, 0x41) }));
    return fetch(...a);
  };

  await t.rejects(store.get(id, { start: 10, end: 20 }), { code: 'BLOB_UNREADABLE', cause: { message: /replaced while it was read/ } });
  t.equal(calls, 2, 'checked, then refused at the range');
});

async function bytes(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
