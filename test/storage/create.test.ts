import { randomBytes } from 'node:crypto';
import t from 'tap';
import { keyRingOf } from '../../src/storage/create.js';

t.test('encryption keys come from the environment (or files), must be 32 bytes of base64, and are never echoed', async (t) => {
  const k = randomBytes(32).toString('base64');
  const ring = keyRingOf({ activeKey: 'a', keys: [{ id: 'a', env: 'KEY_A' }] }, { KEY_A: k });
  t.equal(ring.activeKeyId, 'a');
  t.ok(ring.keys.get('a')?.equals(Buffer.from(k, 'base64')));
  t.throws(() => keyRingOf({ activeKey: 'a', keys: [{ id: 'a', env: 'KEY_A' }] }, {}), /environment variable KEY_A is empty or not set/);
  const short = randomBytes(16).toString('base64');
  const err = (() => {
    try {
      keyRingOf({ activeKey: 'a', keys: [{ id: 'a', env: 'KEY_A' }] }, { KEY_A: short });
    } catch (e) {
      return e as Error;
    }
    return undefined;
  })();
  t.match(err?.message, /must be 32 bytes, base64-encoded/);
  t.notOk(err?.message.includes(short), 'the key material is not in the message');
});
