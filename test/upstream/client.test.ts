/**
 * readJson (src/upstream/client.ts): the one reader of small upstream answers the gateway must
 * look into. It never holds more than its limit, and each way an answer can be wrong has one code.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import t from 'tap';
import { readJson } from '../../src/upstream/client.js';

/** An upstream answer made of `chunks`, with `headers`; `breakOff` errors the stream after them. */
function answer(chunks: string[], headers: Record<string, string> = {}, breakOff?: NodeJS.ErrnoException): IncomingMessage {
  let pulled = 0;
  const r = new Readable({
    read() {
      if (pulled < chunks.length) this.push(Buffer.from(chunks[pulled++] ?? ''));
      else if (breakOff) this.destroy(breakOff);
      else this.push(null);
    },
  });
  return Object.assign(r, { headers }) as unknown as IncomingMessage;
}

t.test('a whole answer within the limit is parsed', async (t) => {
  t.same(await readJson(answer(['{"resourceType":', '"Patient","id":"p1"}']), 100), { resourceType: 'Patient', id: 'p1' });
});

t.test('a declared length over the limit is refused before any byte is read', async (t) => {
  const res = answer(['{}'], { 'content-length': '101' });
  await t.rejects(readJson(res, 100), { code: 'UPSTREAM_INVALID', message: /larger than 100 bytes/ });
  t.ok(res.destroyed, 'the answer is dropped, not drained');
});

t.test('an undeclared answer that grows past the limit is refused when it does', async (t) => {
  const res = answer(['{"a":"', 'x'.repeat(60), 'x'.repeat(60), '"}']);
  await t.rejects(readJson(res, 100), { code: 'UPSTREAM_INVALID', message: /larger than 100 bytes/ });
  t.ok(res.destroyed);
});

t.test('malformed JSON is UPSTREAM_INVALID', async (t) => {
  await t.rejects(readJson(answer(['{"resourceType":"Patient"']), 100), { code: 'UPSTREAM_INVALID', message: /malformed JSON/ });
});

t.test('an answer that breaks off is the upstream failing: UPSTREAM_UNAVAILABLE, or UPSTREAM_TIMEOUT when it timed out', async (t) => {
  const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
  await t.rejects(readJson(answer(['{"a":'], {}, reset), 100), { code: 'UPSTREAM_UNAVAILABLE' });
  const timedOut = Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' });
  await t.rejects(readJson(answer(['{"a":'], {}, timedOut), 100), { code: 'UPSTREAM_TIMEOUT' });
});
