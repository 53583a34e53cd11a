// FINDING (issue 12, 11): a validly signed token with `iat` a year in the future was accepted.
// jose checks `iat` only when given a maxTokenAge, so such a token (a skewed or compromised
// issuer, or one minted to be used later) passed. Beyond auth.clockToleranceSeconds it is now
// 401 invalid_token, like an nbf in the future.
import t from 'tap';
import { makeKey, mintToken, startJwksServer } from '../helpers/auth.js';
import { startTestGateway } from '../helpers/gateway.js';
import { startUpstream } from '../helpers/upstream.js';
import { outcome } from './helpers.js';

t.test('a token issued beyond the clock tolerance in the future is 401 invalid_token and reaches nothing', async (t) => {
  const up = await startUpstream(t);
  const key = await makeKey('k1');
  const jwks = await startJwksServer(t, [key]);
  const gw = await startTestGateway(t, { upstream: up.url, jwksUri: jwks.url });
  const read = (iatFromNow: number) =>
    mintToken(key, { issuedAt: iatFromNow, expiresIn: 400 * 86_400, claims: { scope: 'user/*.rs' } }).then((tok) =>
      fetch(`${gw.base}/Patient?_count=1`, { headers: { authorization: `Bearer ${tok}` } }),
    );

  const before = up.requests.length;
  for (const [what, iat] of [
    ['a year ahead', 365 * 86_400],
    ['two minutes ahead', 120],
  ] as const) {
    const res = await read(iat);
    t.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token", error_description="token issued in the future"', what);
    t.same(await outcome(res), [401, 'INVALID_TOKEN'], what);
  }
  t.equal(up.requests.length, before, 'nothing reached the upstream');

  // Inside the tolerance (30 s by default) the token passes: clocks are never exactly in step.
  const near = await read(10);
  t.equal(near.status, 200, 'iat 10 s ahead, inside the tolerance');
  await near.arrayBuffer();
});
