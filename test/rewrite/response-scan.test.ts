/**
 * spoolBundleResponse (src/rewrite/response-scan.ts): the upstream's batch/transaction-response
 * is spooled byte for byte whatever it is; only what it says about each entry is read, and an
 * answer the scan cannot read yields no entries rather than half of them.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { spoolBundleResponse } from '../../src/rewrite/response-scan.js';

const dir = mkdtempSync(join(tmpdir(), 'fbg-response-scan-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** Spools `text` cut into `size`-character chunks; returns the entries and the spooled bytes. */
async function spool(text: string, size = 7) {
  const chunks: Buffer[] = [];
  for (let i = 0; i < text.length; i += size) chunks.push(Buffer.from(text.slice(i, i + size)));
  const file = join(dir, `r${n++}.json`);
  const got = await spoolBundleResponse(Readable.from(chunks), file);
  return { ...got, spooled: readFileSync(file, 'utf8') };
}

const response = JSON.stringify({
  resourceType: 'Bundle',
  type: 'transaction-response',
  entry: [
    { response: { status: '201 Created', location: 'Binary/b1/_history/1' } },
    { resource: { resourceType: 'OperationOutcome', issue: [] }, response: { status: '400 Bad Request' } },
    { response: { location: 'Patient/p/_history/2', status: '200 OK' } },
  ],
});

t.test("each entry's status and location are read, in order, whatever the chunking; the bytes are spooled as they came", async (t) => {
  for (const size of [1, 7, 4096]) {
    const got = await spool(response, size);
    t.same(got.entries, [
      { status: '201 Created', location: 'Binary/b1/_history/1' },
      { status: '400 Bad Request', location: undefined },
      { status: '200 OK', location: 'Patient/p/_history/2' },
    ]);
    t.equal(got.spooled, response);
    t.equal(got.size, Buffer.byteLength(response));
  }
});

t.test('only top-level entry[i].response is read: a nested "entry" or "response" is not an entry', async (t) => {
  const nested = JSON.stringify({
    resourceType: 'Bundle',
    contained: [{ entry: [{ response: { status: '500' } }] }],
    entry: [{ resource: { entry: [{ response: { status: 'fake' } }] }, response: { status: '201 Created' } }],
  });
  t.same((await spool(nested)).entries, [{ status: '201 Created', location: undefined }]);
});

t.test('an answer the scan cannot read is still spooled whole, with no entries', async (t) => {
  const broken = `${response.slice(0, response.length / 2)}<html>`;
  for (const text of ['<html>upstream error</html>', broken, `${'['.repeat(1100)}${']'.repeat(1100)}`]) {
    const got = await spool(text);
    t.same(got.entries, [], text.slice(0, 20));
    t.equal(got.spooled, text);
  }
});

t.test('a body that fails midway leaves no spool file behind', async (t) => {
  const file = join(dir, 'failed.json');
  const body = new Readable({
    read() {
      this.push(Buffer.from('{"resourceType":"Bundle","entry":['));
      this.destroy(new Error('upstream went away'));
    },
  });
  await t.rejects(spoolBundleResponse(body, file), { message: 'upstream went away' });
  t.throws(() => readFileSync(file), { code: 'ENOENT' });
});
