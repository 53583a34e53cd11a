import t from 'tap';
import { inRanges, parseAddress, parseRange, parseRanges, type Address } from '../../src/lib/ip.js';

function addr(text: string): Address {
  const a = parseAddress(text);
  if (!a) throw new Error(`test setup: ${text} should parse`);
  return a;
}

function ranges(...texts: string[]) {
  return parseRanges(texts);
}

t.test('parseAddress: canonical IPv4 and IPv6 are accepted', async (t) => {
  for (const [text, kind, canonical] of [
    ['127.0.0.1', 'ipv4', '127.0.0.1'],
    ['0.0.0.0', 'ipv4', '0.0.0.0'],
    ['255.255.255.255', 'ipv4', '255.255.255.255'],
    ['10.0.0.1', 'ipv4', '10.0.0.1'],
    ['::1', 'ipv6', '::1'],
    ['::', 'ipv6', '::'],
    ['2001:db8::1', 'ipv6', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', 'ipv6', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', 'ipv6', '2001:db8::1'],
    ['fe80::1', 'ipv6', 'fe80::1'],
  ] as const) {
    const a = parseAddress(text);
    t.ok(a, `${text} parses`);
    t.equal(a?.kind(), kind, `${text} is ${kind}`);
    t.equal(a?.toString(), canonical, `${text} → ${canonical}`);
  }
});

t.test('parseAddress: non-canonical IPv4 spellings (which other parsers expand differently) are refused', async (t) => {
  for (const text of [
    '127.1', // inet_aton: 127.0.0.1
    '127.0.1', // inet_aton: 127.0.0.1
    '2130706433', // one 32-bit number
    '0x7f000001',
    '0x7f.0.0.1', // hex octet
    '0x7F.0x0.0x0.0x1',
    '010.0.0.1', // octal 8.0.0.1 to some, decimal 10.0.0.1 to others
    '0127.0.0.1',
    '127.0.0.01',
    '00.0.0.0',
    '1.2.3.04',
    '256.0.0.1',
    '1.2.3.4.5',
    '127.0.0.1.',
    '.127.0.0.1',
    '1..2.3',
    ' 127.0.0.1',
    '127.0.0.1 ',
    '+1.2.3.4',
    '1.2.3.-4',
    '1.2.3.4/32', // a range is not an address
    '',
    'localhost',
    'example.com',
  ]) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text));
  }
});

t.test('parseAddress: invalid or scoped IPv6 is refused', async (t) => {
  for (const text of [
    'fe80::1%eth0', // zone ids name an interface, not an address
    'fe80::1%1',
    ':::1',
    '1::2::3',
    '2001:db8::g',
    '12345::1',
    '1:2:3:4:5:6:7:8:9',
    '[::1]',
    '::1/128',
  ]) {
    t.equal(parseAddress(text), undefined, JSON.stringify(text));
  }
});

t.test('parseAddress: IPv4-mapped IPv6 becomes the IPv4 address; a mapped non-canonical tail is refused', async (t) => {
  for (const text of ['::ffff:127.0.0.1', '::FFFF:127.0.0.1', '0:0:0:0:0:ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:7F00:0001']) {
    const a = parseAddress(text);
    t.equal(a?.kind(), 'ipv4', `${text} is IPv4`);
    t.equal(a?.toString(), '127.0.0.1', `${text} → 127.0.0.1`);
  }
  // ipaddr.js itself reads these tails leniently (parseInt: '010' → 10, '0x7f' → 127).
  for (const text of ['::ffff:127.1', '::ffff:010.0.0.1', '::ffff:0x7f.0.0.1', '::ffff:127.0.0.01', '::ffff:1.2.3.04']) {
    t.equal(parseAddress(text), undefined, `${text} refused`);
  }
});

t.test('parseAddress: a non-canonical dotted tail is refused in any IPv6 address, not only a mapped one', async (t) => {
  // NAT64 (64:ff9b::/96) and other embedded-IPv4 forms: ipaddr.js reads '010' as 10 and '0x7f' as 127,
  // inet_pton refuses both; the same text must not name different addresses to us and to the next hop.
  for (const text of ['64:ff9b::010.0.0.1', '64:ff9b::0x7f.0.0.1', '2001:db8::127.0.0.01', '::010.0.0.1']) {
    t.equal(parseAddress(text), undefined, `${text} refused`);
  }
  t.equal(parseAddress('64:ff9b::10.0.0.1')?.toString(), '64:ff9b::a00:1', 'a canonical embedded IPv4 tail is fine');
});

t.test('parseRange: IPv4 CIDR and bare addresses', async (t) => {
  const cases: [string, string, number][] = [
    ['10.0.0.0/8', '10.0.0.0', 8],
    ['10.1.2.3/8', '10.1.2.3', 8], // host bits set: matching uses the prefix only
    ['127.0.0.1', '127.0.0.1', 32],
    ['0.0.0.0/0', '0.0.0.0', 0],
    ['192.0.2.1/32', '192.0.2.1', 32],
  ];
  for (const [text, net, bits] of cases) {
    const r = parseRange(text);
    t.ok(r, `${text} parses`);
    t.equal(r?.[0].kind(), 'ipv4');
    t.equal(r?.[0].toString(), net);
    t.equal(r?.[1], bits, `${text} prefix`);
  }
});

t.test('parseRange: IPv6 CIDR and bare addresses', async (t) => {
  const cases: [string, string, number][] = [
    ['::1', '::1', 128],
    ['::1/128', '::1', 128],
    ['2001:db8::/32', '2001:db8::', 32],
    ['::/0', '::', 0],
    ['fe80::/10', 'fe80::', 10],
  ];
  for (const [text, net, bits] of cases) {
    const r = parseRange(text);
    t.equal(r?.[0].kind(), 'ipv6', `${text} is IPv6`);
    t.equal(r?.[0].toString(), net);
    t.equal(r?.[1], bits, `${text} prefix`);
  }
});

t.test('parseRange: IPv4-mapped IPv6 ranges of /96 and longer become IPv4 ranges', async (t) => {
  const cases: [string, string, number][] = [
    ['::ffff:127.0.0.1/128', '127.0.0.1', 32],
    ['::ffff:127.0.0.1', '127.0.0.1', 32],
    ['::ffff:10.0.0.0/104', '10.0.0.0', 8],
    ['::ffff:0:0/96', '0.0.0.0', 0],
    ['::ffff:7f00:1/128', '127.0.0.1', 32],
  ];
  for (const [text, net, bits] of cases) {
    const r = parseRange(text);
    t.equal(r?.[0].kind(), 'ipv4', `${text} is IPv4`);
    t.equal(r?.[0].toString(), net);
    t.equal(r?.[1], bits, `${text} prefix`);
  }
});

t.test('parseRange: invalid prefixes and non-canonical addresses are refused', async (t) => {
  for (const text of [
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/',
    '10.0.0.0/8/8',
    '10.0.0.0/8.0',
    '10.0.0.0/ 8',
    '10.0.0.0/0x8',
    '10.0.0.0/1000',
    '10.0.0.0/255.0.0.0', // netmask notation is not CIDR
    '::/129',
    '::1/-0',
    '::1/',
    '10/8', // inet_net_pton shorthand
    '10.0/16',
    '127.1/32',
    '0x7f.0.0.1/32',
    '010.0.0.0/8',
    '::ffff:127.1/128',
    '::ffff:010.0.0.1/128', // the IPv6 path must be as strict about an IPv4 tail as parseAddress
    '::ffff:0x7f.0.0.1/128',
    'fe80::1%eth0/64',
    '',
    '/8',
    'any',
  ]) {
    t.equal(parseRange(text), undefined, JSON.stringify(text));
  }
});

t.test('parseRanges throws on the first invalid entry, naming it', async (t) => {
  t.throws(() => parseRanges(['10.0.0.0/8', '127.1']), /127\.1/);
  t.same(parseRanges([]), []);
});

t.test('inRanges: IPv4 membership', async (t) => {
  const r = ranges('10.0.0.0/8', '192.168.1.0/24');
  t.ok(inRanges(addr('10.1.2.3'), r));
  t.ok(inRanges(addr('10.255.255.255'), r));
  t.ok(inRanges(addr('192.168.1.200'), r));
  t.notOk(inRanges(addr('11.0.0.0'), r));
  t.notOk(inRanges(addr('192.168.2.1'), r));
  t.notOk(inRanges(addr('9.255.255.255'), r));
  t.notOk(inRanges(addr('127.0.0.1'), []), 'no ranges: nothing is in them');
  t.ok(inRanges(addr('203.0.113.9'), ranges('0.0.0.0/0')), '/0 covers all IPv4');
  t.ok(inRanges(addr('127.0.0.1'), ranges('127.0.0.1')), 'a bare address is a /32');
  t.notOk(inRanges(addr('127.0.0.2'), ranges('127.0.0.1')));
});

t.test('inRanges: IPv6 membership', async (t) => {
  const r = ranges('2001:db8::/32', '::1');
  t.ok(inRanges(addr('2001:db8:ffff::1'), r));
  t.ok(inRanges(addr('::1'), r));
  t.notOk(inRanges(addr('2001:db9::1'), r));
  t.notOk(inRanges(addr('::2'), r));
});

t.test('inRanges: an IPv4 client is not in an IPv6-only range and vice versa', async (t) => {
  t.notOk(inRanges(addr('127.0.0.1'), ranges('::1')), '127.0.0.1 is not ::1');
  t.notOk(inRanges(addr('::1'), ranges('127.0.0.0/8')), '::1 is not in 127/8');
  t.notOk(inRanges(addr('::1'), ranges('0.0.0.0/0')), 'IPv4 /0 does not cover IPv6');
  t.notOk(inRanges(addr('10.0.0.1'), ranges('2001:db8::/32')));
});

t.test('inRanges: mapped addresses and mapped ranges meet as IPv4', async (t) => {
  // Listening on '::', Node reports an IPv4 client as ::ffff:a.b.c.d.
  t.ok(inRanges(addr('::ffff:127.0.0.1'), ranges('127.0.0.1/32')), 'mapped client, IPv4 rule');
  t.ok(inRanges(addr('127.0.0.1'), ranges('::ffff:127.0.0.1/128')), 'IPv4 client, mapped rule');
  t.ok(inRanges(addr('::ffff:10.9.8.7'), ranges('::ffff:10.0.0.0/104')), 'mapped client, mapped /104 rule');
  t.notOk(inRanges(addr('::ffff:11.0.0.1'), ranges('::ffff:10.0.0.0/104')));
  t.ok(inRanges(addr('8.8.8.8'), ranges('::ffff:0:0/96')), '::ffff:0:0/96 is every IPv4 address');
});

t.test(
  'inRanges: an IPv6 range that contains the mapped space also covers IPv4 clients (ipDeny ::/0 must not let IPv4 through)',
  async (t) => {
    // Clients are normalised to IPv4; without this ipDeny ['::/0'] would deny IPv6 only and
    // trustedProxies/ipAllow written in IPv6 would silently not cover the IPv4 clients they cover.
    t.ok(inRanges(addr('127.0.0.1'), ranges('::/0')), '::/0 covers 127.0.0.1');
    t.ok(inRanges(addr('203.0.113.1'), ranges('::/0')), '::/0 covers any IPv4');
    t.ok(inRanges(addr('10.0.0.1'), ranges('::ffff:0:0/95')), 'a /95 around the mapped space covers it');
    t.ok(inRanges(addr('10.0.0.1'), ranges('::/80')), '::/80 covers ::ffff:0:0/96');
    t.notOk(inRanges(addr('10.0.0.1'), ranges('2001:db8::/32')), 'an unrelated IPv6 range does not');
    t.notOk(inRanges(addr('10.0.0.1'), ranges('::/96')), '::/96 (IPv4-compatible, deprecated) is not the mapped space');
  },
);
