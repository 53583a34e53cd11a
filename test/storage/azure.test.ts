import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BlobServiceClient,
  BlockBlobClient,
  ContainerSASPermissions,
  StorageSharedKeyCredential,
  generateBlobSASQueryParameters,
  type ContainerClient,
} from '@azure/storage-blob';
import t, { type Test } from 'tap';
import { AzureBlobStore, type AzureStoreOptions } from '../../src/storage/azure.js';
import { startAzurite } from '../helpers/azurite.js';
import { eventually } from '../helpers/poll.js';
import { blobStoreContract, chunked, failingBody } from './contract.js';

const az = await startAzurite(t);
const service = BlobServiceClient.fromConnectionString(az.connectionString);
const sharedKey = new StorageSharedKeyCredential(az.accountName, az.accountKey);
const PREFIX = 'gw/';
let containers = 0;

async function freshContainer(t: Test): Promise<ContainerClient> {
  const container = service.getContainerClient(`test-${++containers}`);
  await container.create();
  t.teardown(() => container.deleteIfExists());
  return container;
}

/** Every blob in the container, committed or not, inside the store's prefix or not. */
async function residue(container: ContainerClient): Promise<string[]> {
  const names: string[] = [];
  for await (const b of container.listBlobsFlat({ includeUncommitedBlobs: true })) names.push(b.name);
  return names.sort();
}

function storeFor(
  container: ContainerClient,
  credential: Omit<AzureStoreOptions, 'container'> = { connectionString: az.connectionString },
): AzureBlobStore {
  return new AzureBlobStore({ container: container.containerName, prefix: PREFIX, ...credential });
}

function sas(container: ContainerClient, permissions: string, startsOn: Date, expiresOn: Date): string {
  return generateBlobSASQueryParameters(
    { containerName: container.containerName, permissions: ContainerSASPermissions.parse(permissions), startsOn, expiresOn },
    sharedKey,
  ).toString();
}

/**
 * Blocks that land some time after they were handed to the SDK, as on a slow link: a put that
 * fails while they are in flight must wait for them before cleaning up, or they outlive it.
 * The delay is the scenario (a slow link); `inFlight()` counts the stagings not yet settled, so
 * a test can wait for the last one to land (or fail) before it checks that none was left behind.
 */
function slowStaging(t: Test, ms: number): { inFlight(): number; started(): number } {
  const original = BlockBlobClient.prototype.stageBlock;
  let started = 0;
  let settled = 0;
  t.teardown(() => {
    BlockBlobClient.prototype.stageBlock = original;
  });
  BlockBlobClient.prototype.stageBlock = async function (this: BlockBlobClient, ...args: Parameters<BlockBlobClient['stageBlock']>) {
    started++;
    try {
      await sleep(ms);
      return await original.apply(this, args);
    } finally {
      settled++;
    }
  };
  return { inFlight: () => started - settled, started: () => started };
}

const HOUR = 3_600_000;
const FORBIDDEN = { name: 'RestError', statusCode: 403 };
const valid = (): [Date, Date] => [new Date(Date.now() - HOUR), new Date(Date.now() + HOUR)];

blobStoreContract(t, 'azure', async (t) => {
  const container = await freshContainer(t);
  return {
    store: storeFor(container),
    residue: () => residue(container),
    corrupt: async (id, at) => {
      const blob = container.getBlockBlobClient(`${PREFIX}blobs/${id}`);
      const b = await blob.downloadToBuffer();
      b[at] ^= 0x04;
      await blob.uploadData(b);
    },
  };
});

t.test('azure: content and record sit under the prefix; the content blob carries its type', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  const info = await store.put(chunked(Buffer.from('%PDF-1.7')), { contentType: 'application/pdf' });
  t.same(await residue(container), [`${PREFIX}blobs/${info.id}`, `${PREFIX}meta/${info.id}.json`]);
  const props = await container.getBlobClient(`${PREFIX}blobs/${info.id}`).getProperties();
  t.equal(props.contentType, 'application/pdf');
  const record = JSON.parse(
    await text((await container.getBlobClient(`${PREFIX}meta/${info.id}.json`).download()).readableStreamBody!),
  ) as unknown;
  t.match(record, { v: 1, id: info.id, sha256: info.sha256, owner: null });
  t.same((await store.list({ prefix: info.id.slice(0, 6) })).items, [info], 'list by id prefix');
  t.same((await store.list({ prefix: '../' })).items, [], 'a prefix no id can have lists nothing');
});

t.test('azure: a failure after blocks were staged leaves no uncommitted blocks', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container, { connectionString: az.connectionString, blockSizeBytes: 64 * 1024, concurrency: 4 });
  const staging = slowStaging(t, 200);
  const body = failingBody(randomBytes(1024 * 1024));
  await t.rejects(store.put(body, { contentType: 'application/pdf' }), /client went away/);
  t.same(await residue(container), []);
  t.ok(staging.started() > 0, 'blocks were staging when the body failed');
  await eventually(() => staging.inFlight() === 0, 'every staged block landing (or failing)');
  t.same(await residue(container), [], 'no block lands after the put gave up');
  t.ok(body.destroyed, 'the body is not left open');
});

t.test('azure: an abort while blocks are staging leaves nothing and closes the body', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container, { connectionString: az.connectionString, blockSizeBytes: 64 * 1024 });
  const staging = slowStaging(t, 200);
  const ac = new AbortController();
  const body = new Readable({ read() {} });
  body.push(randomBytes(1024 * 1024));
  const put = store.put(body, { contentType: 'application/pdf' }, { signal: ac.signal });
  // Aborted while blocks are staging (each takes 200 ms to land).
  await eventually(() => staging.started() > 0, 'a block staging');
  ac.abort();
  await t.rejects(put, { name: 'AbortError' });
  t.same(await residue(container), []);
  await eventually(() => staging.inFlight() === 0, 'every staged block landing (or failing)');
  t.same(await residue(container), [], 'no block lands after the put gave up');
  t.ok(body.destroyed, 'the body is not left open');
});

t.test('azure: an already aborted signal stores nothing', async (t) => {
  const container = await freshContainer(t);
  const body = chunked(randomBytes(1000));
  await t.rejects(storeFor(container).put(body, { contentType: 'text/plain' }, { signal: AbortSignal.abort() }), { name: 'AbortError' });
  t.same(await residue(container), []);
  t.ok(body.destroyed);
});

t.test('azure: a record write that fails removes the committed content', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  // The one failure Azure cannot be made to produce on cue: content committed, record refused.
  Object.assign(store, { writeRecord: () => Promise.reject(new Error('record write failed')) });
  await t.rejects(store.put(chunked(randomBytes(100_000)), { contentType: 'image/png' }), /record write failed/);
  t.same(await residue(container), []);
});

t.test('azure: an abort that arrives while the record is written still wins and removes both', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  const ac = new AbortController();
  const internals = store as unknown as { writeRecord: (...a: unknown[]) => Promise<void> };
  const writeRecord = internals.writeRecord.bind(store);
  internals.writeRecord = async (...a) => {
    await writeRecord(...a);
    ac.abort();
  };
  await t.rejects(store.put(chunked(randomBytes(100_000)), { contentType: 'image/png' }, { signal: ac.signal }), { name: 'AbortError' });
  t.same(await residue(container), []);
});

t.test('azure: concurrent setMeta calls do not lose each other’s updates', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  for (let i = 0; i < 5; i++) {
    const { id } = await store.put(chunked(Buffer.from(`blob ${i}`)), { contentType: 'text/plain' });
    await Promise.all([
      store.setMeta(id, { state: 'linked' }),
      store.setMeta(id, { owner: `Binary/${i}` }),
      store.setMeta(id, { contentType: 'text/csv' }),
    ]);
    t.match(await store.head(id), { state: 'linked', owner: `Binary/${i}`, contentType: 'text/csv' }, `blob ${i} has all three patches`);
  }
});

t.test('azure: a wrong account key is refused and stores nothing', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container, { accountName: az.accountName, accountKey: randomBytes(64).toString('base64'), url: az.blobEndpoint });
  await t.rejects(store.put(chunked(randomBytes(10_000)), { contentType: 'text/plain' }), FORBIDDEN);
  t.same(await residue(container), []);
  const { id } = await storeFor(container).put(chunked(Buffer.from('x')), { contentType: 'text/plain' });
  await t.rejects(store.head(id), FORBIDDEN, 'an auth failure is not "absent"');
  await t.rejects(store.list(), FORBIDDEN);
});

t.test('azure: the right account key works against an explicit endpoint', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container, { accountName: az.accountName, accountKey: az.accountKey, url: az.blobEndpoint });
  const { id } = await store.put(chunked(Buffer.from('keyed')), { contentType: 'text/plain' });
  t.equal(await text((await store.get(id)).body), 'keyed');
});

t.test('azure: a read-only SAS cannot put; a read/write SAS can put, get, list, link and delete', async (t) => {
  const container = await freshContainer(t);
  const readOnly = storeFor(container, { url: az.blobEndpoint, sasToken: sas(container, 'r', ...valid()) });
  await t.rejects(readOnly.put(chunked(randomBytes(10_000)), { contentType: 'text/plain' }), FORBIDDEN);
  t.same(await residue(container), []);

  // The SAS in a container URL's query, the other way to hand one over.
  const readWrite = storeFor(container, { url: `${az.blobEndpoint}/${container.containerName}?${sas(container, 'rwcdl', ...valid())}` });
  const data = randomBytes(50_000);
  const info = await readWrite.put(chunked(data), { contentType: 'application/octet-stream' });
  t.ok(Buffer.concat(await (await readWrite.get(info.id)).body.toArray()).equals(data), 'get returns the bytes');
  t.same(await readOnly.head(info.id), info, 'the read-only SAS reads it too');
  t.same((await readWrite.list()).items, [info]);
  t.equal((await readWrite.setMeta(info.id, { state: 'linked' })).state, 'linked');
  await readWrite.delete(info.id);
  t.same(await residue(container), []);
});

t.test('azure: an expired SAS is refused', async (t) => {
  const container = await freshContainer(t);
  const { id } = await storeFor(container).put(chunked(Buffer.from('kept')), { contentType: 'text/plain' });
  const before = await residue(container);
  const expired = storeFor(container, {
    url: az.blobEndpoint,
    sasToken: sas(container, 'rwcdl', new Date(Date.now() - 2 * HOUR), new Date(Date.now() - HOUR)),
  });
  await t.rejects(expired.put(chunked(Buffer.from('late')), { contentType: 'text/plain' }), FORBIDDEN);
  await t.rejects(expired.head(id), FORBIDDEN, 'not reported as absent');
  await t.rejects(expired.get(id), FORBIDDEN);
  await t.rejects(expired.delete(id), FORBIDDEN);
  t.same(await residue(container), before, 'nothing added, nothing removed');
});

t.test('azure: a missing container is an error, not a missing blob', async (t) => {
  const store = new AzureBlobStore({ container: 'no-such-container', connectionString: az.connectionString });
  const id = '0123456789abcdef0123456789abcdef';
  await t.rejects(store.head(id), { statusCode: 404, code: 'ContainerNotFound' });
  const err = await store.get(id).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.not((err as { code?: string } | undefined)?.code, 'BLOB_UNREADABLE', 'get does not say the blob is missing');
  await t.rejects(store.put(chunked(Buffer.from('x')), { contentType: 'text/plain' }), { name: 'RestError', statusCode: 404 });
});

t.test('azure: the constructor wants exactly one credential form', async (t) => {
  const container = 'c-1';
  const url = 'https://acct.blob.core.windows.net';
  const none = /exactly one credential: connectionString, accountName \+ accountKey, or url \+ sasToken; got none/;
  t.throws(() => new AzureBlobStore({ container }), none);
  t.throws(() => new AzureBlobStore({ container, url }), none, 'a URL alone is not a credential');
  t.throws(
    () => new AzureBlobStore({ container, connectionString: az.connectionString, accountName: 'a', accountKey: 'aw==' }),
    /got connectionString and accountName \+ accountKey/,
  );
  t.throws(
    () => new AzureBlobStore({ container, connectionString: az.connectionString, sasToken: 'sv=x&sig=y' }),
    /got connectionString and url \+ sasToken/,
  );
  t.throws(
    () => new AzureBlobStore({ container, accountName: 'a', accountKey: 'aw==', url: `${url}?sig=y` }),
    /got accountName \+ accountKey and url \+ sasToken/,
  );
  t.throws(() => new AzureBlobStore({ container, accountName: 'a' }), /accountName and accountKey must be given together/);
  t.throws(() => new AzureBlobStore({ container, accountKey: 'aw==' }), /accountName and accountKey must be given together/);
  t.throws(() => new AzureBlobStore({ container, sasToken: 'sv=x&sig=y' }), /sasToken needs url/);
  t.throws(() => new AzureBlobStore({ container, url: `${url}?sig=y`, sasToken: 'sv=x&sig=y' }), /url already carries a SAS/);
  t.throws(
    () => new AzureBlobStore({ container, connectionString: az.connectionString, url }),
    /url cannot be combined with connectionString/,
  );
  t.equal(new AzureBlobStore({ container, accountName: 'a', accountKey: 'aw==' }).driver, 'azure');
  t.equal(new AzureBlobStore({ container, url: `${url}/${container}?sv=x&sig=y` }).driver, 'azure');
});

t.test('azure: a listing from an id reads no record before it: those names come as empty pages with a cursor', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await store.put(Readable.from([Buffer.from(`b${i}`)]), { contentType: 'text/plain' })).id);
  ids.sort();
  await container.getBlockBlobClient(`${PREFIX}meta/${ids[1]}.json`).uploadData(Buffer.from('{"not a record'));
  t.same((await store.list()).unreadable, [ids[1]], 'control: a listing from the first reads the broken record');
  const pages: { items: string[]; unreadable?: readonly string[]; more: boolean }[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list({ from: ids[3], limit: 2, ...(cursor ? { cursor } : {}) });
    pages.push({ items: page.items.map((i) => i.id), ...(page.unreadable ? { unreadable: page.unreadable } : {}), more: !!page.cursor });
    cursor = page.cursor;
  } while (cursor && pages.length < 10);
  t.same(
    pages.flatMap((p) => p.items),
    ids.slice(3),
  );
  t.ok(
    pages.every((p) => p.unreadable === undefined),
    'the broken record before it was never read',
  );
  t.same(pages[0], { items: [], more: true }, 'a page of names before it: empty, with a cursor');
});

t.test('azure: a range of a blob recorded before chunk digests is served from the blob its check read, never a replacement', async (t) => {
  const container = await freshContainer(t);
  const store = storeFor(container);
  const data = randomBytes(600_000);
  const { id } = await store.put(chunked(data), { contentType: 'application/octet-stream' });
  const meta = container.getBlockBlobClient(`${PREFIX}meta/${id}.json`);
  const rec = JSON.parse(await text((await meta.download()).readableStreamBody!)) as Record<string, unknown>;
  delete rec['chunks'];
  const json = JSON.stringify(rec);
  await meta.upload(json, Buffer.byteLength(json));
  const read = async (body: Readable) => Buffer.concat(await body.toArray());
  t.ok(
    (await read((await store.get(id, { start: 10, end: 20 })).body)).equals(data.subarray(10, 21)),
    'control: a range, checked whole first',
  );

  // The blob replaced after the whole read that checked it, before the range is read.
  const spied = store as unknown as { fetch: (...a: unknown[]) => Promise<Readable> };
  const fetch = spied.fetch.bind(store);
  let calls = 0;
  spied.fetch = async (...a) => {
    if (++calls === 2) await container.getBlockBlobClient(`${PREFIX}blobs/${id}`).upload(Buffer.alloc(data.length, 0x41), data.length);
    return fetch(...a);
  };

  await t.rejects(store.get(id, { start: 10, end: 20 }), { code: 'BLOB_UNREADABLE', cause: { message: /replaced while it was read/ } });
  t.equal(calls, 2, 'checked, then refused at the range');
});
