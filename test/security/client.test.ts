// clientContext: who the client is (the socket peer, or X-Forwarded-For walked right to left
// through trusted proxies only) and whether it came over HTTPS. A fake socket stands in for the
// connection: the function reads only remoteAddress and encrypted.
import type { Socket } from 'node:net';
import t from 'tap';
import { GatewayError } from '../../src/errors/catalogue.js';
import { parseAddress, parseRanges } from '../../src/lib/ip.js';
import { clientContext, type ForwardingHeaders } from '../../src/security/client.js';

function socket(remoteAddress: string | undefined, encrypted = false): Socket {
  return { remoteAddress, encrypted } as unknown as Socket;
}

/** The headers as http/context.ts hands them over: each split on commas and trimmed. */
function headers(h: { xff?: string; realIp?: string; xfp?: string } = {}): ForwardingHeaders {
  const split = (v: string | undefined) => (v === undefined ? undefined : v.split(',').map((s) => s.trim()));
  return { xff: split(h.xff), realIp: split(h.realIp), xfp: split(h.xfp) };
}

const PROXIES = parseRanges(['127.0.0.1/32', '10.0.0.0/8', '2001:db8::/32']);

t.test('X-Forwarded-For is walked right to left through trusted hops; the first untrusted hop is the client', async (t) => {
  const cases: { peer: string; xff: string | undefined; client: string; chain: string[]; note: string }[] = [
    { peer: '127.0.0.1', xff: undefined, client: '127.0.0.1', chain: [], note: 'no XFF: the trusted proxy itself' },
    { peer: '127.0.0.1', xff: '203.0.113.7', client: '203.0.113.7', chain: ['203.0.113.7'], note: 'one hop' },
    {
      peer: '127.0.0.1',
      xff: '203.0.113.7, 10.1.1.1, 10.2.2.2',
      client: '203.0.113.7',
      chain: ['203.0.113.7', '10.1.1.1', '10.2.2.2'],
      note: 'through two trusted proxies',
    },
    {
      peer: '127.0.0.1',
      xff: '198.51.100.66, 203.0.113.7, 10.1.1.1',
      client: '203.0.113.7',
      chain: ['203.0.113.7', '10.1.1.1'],
      note: 'entries left of the first untrusted hop are the client’s to write: dropped',
    },
    {
      peer: '127.0.0.1',
      xff: '10.9.9.9, 198.51.100.66, 10.1.1.1',
      client: '198.51.100.66',
      chain: ['198.51.100.66', '10.1.1.1'],
      note: 'an untrusted hop in the middle stops the walk, even with a trusted address left of it',
    },
    {
      peer: '127.0.0.1',
      xff: '10.3.3.3, 10.2.2.2, 10.1.1.1',
      client: '10.3.3.3',
      chain: ['10.3.3.3', '10.2.2.2', '10.1.1.1'],
      note: 'every hop trusted: the walk stops at the leftmost',
    },
    {
      peer: '10.0.0.5',
      xff: '2001:db8::9, 203.0.113.7',
      client: '203.0.113.7',
      chain: ['203.0.113.7'],
      note: 'the rightmost untrusted hop ends it at once',
    },
    {
      peer: '::1',
      xff: '203.0.113.7',
      client: '::1',
      chain: [],
      note: 'a peer outside trustedProxies: XFF ignored',
    },
    {
      peer: '2001:db8::1',
      xff: '2001:db8:ffff::2, 2001:db8::3',
      client: '2001:db8:ffff::2',
      chain: ['2001:db8:ffff::2', '2001:db8::3'],
      note: 'IPv6 proxies and hops; all trusted, leftmost',
    },
  ];
  for (const c of cases) {
    const ctx = clientContext('r1', socket(c.peer), headers({ xff: c.xff }), PROXIES);
    t.equal(ctx.clientIp.toString(), c.client, `${c.note}: client`);
    t.same(ctx.forwardedChain, c.chain, `${c.note}: accepted chain`);
    t.equal(ctx.peerIp.toString(), parseAddress(c.peer)?.toString(), `${c.note}: the peer is always the socket's`);
  }
});

t.test('an untrusted peer: XFF does not move the client, and no trustedProxies means no peer is trusted', async (t) => {
  const spoof = headers({ xff: '10.1.1.1', xfp: 'https' });
  const untrusted = clientContext('r', socket('203.0.113.9'), spoof, PROXIES);
  t.equal(untrusted.peerTrusted, false);
  t.equal(untrusted.clientIp.toString(), '203.0.113.9');
  t.same(untrusted.forwardedChain, []);
  t.equal(untrusted.proto, 'http', 'X-Forwarded-Proto from an untrusted peer is ignored');
  t.equal(untrusted.secure, false);

  const none = clientContext('r', socket('127.0.0.1'), spoof, []);
  t.equal(none.peerTrusted, false, 'an empty trustedProxies trusts nobody, loopback included');
  t.equal(none.clientIp.toString(), '127.0.0.1');
  t.equal(none.proto, 'http');
});

t.test('X-Forwarded-Proto counts only from a trusted peer, and only over plain HTTP', async (t) => {
  const cases: [peer: string, encrypted: boolean, xfp: string | undefined, proto: 'http' | 'https'][] = [
    ['127.0.0.1', false, 'https', 'https'],
    ['127.0.0.1', false, 'HTTPS', 'https'],
    ['127.0.0.1', false, 'http', 'http'],
    ['127.0.0.1', false, 'http, https', 'https'], // the last (nearest) proxy's word
    ['127.0.0.1', false, 'https, http', 'http'],
    ['127.0.0.1', false, undefined, 'http'],
    ['127.0.0.1', true, 'http', 'https'], // TLS here is TLS, whatever a proxy says
    ['127.0.0.1', true, undefined, 'https'],
    ['192.0.2.1', false, 'https', 'http'], // untrusted
    ['192.0.2.1', true, undefined, 'https'],
  ];
  for (const [peer, encrypted, xfp, proto] of cases) {
    const ctx = clientContext('r', socket(peer, encrypted), headers({ xfp }), PROXIES);
    const what = `${peer}${encrypted ? ' over TLS' : ''}, X-Forwarded-Proto ${String(xfp)}`;
    t.equal(ctx.proto, proto, what);
    t.equal(ctx.secure, proto === 'https', `${what}: secure`);
  }
  for (const bad of ['ftp', 'https2', '']) {
    t.throws(
      () => clientContext('r', socket('127.0.0.1'), headers({ xfp: bad }), PROXIES),
      { code: 'BAD_FORWARDED_HEADER' },
      `a trusted proxy's X-Forwarded-Proto ${JSON.stringify(bad)} is refused`,
    );
  }
});

t.test('non-canonical addresses in X-Forwarded-For and X-Real-IP are refused, whoever the peer is', async (t) => {
  const bad = ['127.1', '0x7f.0.0.1', '010.0.0.1', '2130706433', '::ffff:010.0.0.1', 'fe80::1%eth0', 'unknown', '', '1.2.3.4:80'];
  for (const peer of ['127.0.0.1', '203.0.113.9']) {
    for (const v of bad) {
      for (const h of [{ xff: v }, { xff: `203.0.113.7, ${v}` }, { xff: `${v}, 10.1.1.1` }, { realIp: v }]) {
        const what = `peer ${peer}: ${JSON.stringify(h)}`;
        try {
          clientContext('r', socket(peer), headers(h), PROXIES);
          t.fail(`${what}: accepted`);
        } catch (err) {
          t.ok(err instanceof GatewayError && err.code === 'BAD_FORWARDED_HEADER', `${what}: BAD_FORWARDED_HEADER`);
        }
      }
    }
  }
  // X-Real-IP is validated but never believed: the client stays the walk's.
  const ctx = clientContext('r', socket('127.0.0.1'), headers({ xff: '203.0.113.7', realIp: '198.51.100.1' }), PROXIES);
  t.equal(ctx.clientIp.toString(), '203.0.113.7');
});

t.test('IPv4-mapped IPv6 peers and hops are IPv4 addresses', async (t) => {
  const mapped = clientContext('r', socket('::ffff:127.0.0.1'), headers({ xff: '::ffff:203.0.113.7' }), PROXIES);
  t.equal(mapped.peerIp.kind(), 'ipv4');
  t.equal(mapped.peerIp.toString(), '127.0.0.1', 'a dual-stack listener’s ::ffff:127.0.0.1 is 127.0.0.1');
  t.equal(mapped.connection.peerText, '127.0.0.1', 'and is written that way into X-Forwarded-For');
  t.equal(mapped.peerTrusted, true, 'so an IPv4 trustedProxies entry covers it');
  t.equal(mapped.clientIp.kind(), 'ipv4');
  t.equal(mapped.clientIp.toString(), '203.0.113.7', 'a mapped hop is the IPv4 client');

  const mappedRule = parseRanges(['::ffff:10.0.0.0/104']);
  t.equal(clientContext('r', socket('10.4.4.4'), headers(), mappedRule).peerTrusted, true, 'a mapped range covers an IPv4 peer');
  t.equal(clientContext('r', socket('11.4.4.4'), headers(), mappedRule).peerTrusted, false);
});

t.test('the connection record is made once per socket; a socket without an address is refused', async (t) => {
  const s = socket('127.0.0.1');
  const first = clientContext('a', s, headers(), []);
  const second = clientContext('b', s, headers({ xff: '203.0.113.7' }), PROXIES);
  t.equal(second.connection, first.connection, 'keep-alive requests share it');
  t.equal(first.id, 'a');
  t.equal(second.id, 'b');
  t.equal(second.clientIp.toString(), '203.0.113.7', 'each request is still walked on its own headers');
  t.throws(() => clientContext('r', socket(undefined), headers(), PROXIES), { code: 'FORBIDDEN' }, 'a closed socket has no address');
  t.throws(() => clientContext('r', socket('not-an-address'), headers(), PROXIES), { code: 'FORBIDDEN' });
});
