import ipaddr from 'ipaddr.js';

export type Address = ipaddr.IPv4 | ipaddr.IPv6;
export type Range = readonly [Address, number];

/**
 * Parses an address the strict way: IPv4 only in canonical four-part decimal (so `127.1`,
 * `0x7f.0.0.1`, `017.0.0.1` are refused — other software expands them differently), IPv6 in any
 * valid textual form. IPv4-mapped IPv6 (`::ffff:10.0.0.1`) becomes the IPv4 address so one
 * rule covers both spellings. Returns undefined when the text is not an address.
 */
export function parseAddress(text: string): Address | undefined {
  if (text.includes('.') && !text.includes(':')) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
    // isValidFourPartDecimal accepts leading zeros ("010.0.0.1"), which some parsers read as octal.
    if (/(^|\.)0\d/.test(text)) return undefined;
    return ipaddr.IPv4.parse(text);
  }
  if (!ipaddr.IPv6.isValid(text) || !canonicalDottedTail(text)) return undefined;
  const v6 = ipaddr.IPv6.parse(text);
  if (v6.zoneId !== undefined) return undefined;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
  return v6;
}

/**
 * An IPv6 text with an embedded dotted IPv4 tail (`::ffff:10.0.0.1`, `64:ff9b::10.0.0.1`) must
 * spell the tail canonically: ipaddr.js reads `010` as 10 and `0x7f` as 127 where inet_pton
 * refuses both, so a non-canonical tail is as ambiguous as the bare IPv4 form.
 */
function canonicalDottedTail(text: string): boolean {
  if (!text.includes('.')) return true;
  return ipaddr.IPv4.isValidFourPartDecimal(text.slice(text.lastIndexOf(':') + 1));
}

/** Parses `a.b.c.d/n`, an IPv6 CIDR, or a bare address (a /32 or /128). Undefined when invalid. */
export function parseRange(text: string): Range | undefined {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? undefined : text.slice(slash + 1);
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  // Parse the IPv6 form ourselves first: a mapped range (::ffff:10.0.0.0/104) must become IPv4/8.
  const isV6 = addrText.includes(':');
  if (isV6) {
    if (!ipaddr.IPv6.isValid(addrText) || !canonicalDottedTail(addrText)) return undefined;
    const v6 = ipaddr.IPv6.parse(addrText);
    if (v6.zoneId !== undefined) return undefined;
    const prefix = prefixText === undefined ? 128 : Number(prefixText);
    if (prefix > 128) return undefined;
    if (v6.isIPv4MappedAddress() && prefix >= 96) return [v6.toIPv4Address(), prefix - 96];
    return [v6, prefix];
  }
  const v4 = parseAddress(addrText);
  if (!v4) return undefined;
  const prefix = prefixText === undefined ? 32 : Number(prefixText);
  if (prefix > 32) return undefined;
  return [v4, prefix];
}

export function parseRanges(texts: readonly string[]): Range[] {
  const out: Range[] = [];
  for (const t of texts) {
    const r = parseRange(t);
    if (!r) throw new Error(`not an IP address or CIDR range: ${t}`);
    out.push(r);
  }
  return out;
}

export function inRanges(addr: Address, ranges: readonly Range[]): boolean {
  const kind = addr.kind();
  let mapped: ipaddr.IPv6 | undefined;
  for (const [net, bits] of ranges) {
    if (net.kind() === kind) {
      if (addr.match(net, bits)) return true;
    } else if (kind === 'ipv4' && bits < 96) {
      // parseRange turns mapped ranges of /96 and longer into IPv4 ones; a shorter IPv6 range
      // (`::/0`, `::/80`) can still contain ::ffff:0:0/96, i.e. every IPv4 client.
      mapped ??= (addr as ipaddr.IPv4).toIPv4MappedAddress();
      if (mapped.match(net, bits)) return true;
    }
  }
  return false;
}

/** An address range as a signed URL's `sip` gives it: one address, a CIDR range, or `first-last` (Azure's form). */
export type AddressSpan = { readonly cidr: Range } | { readonly first: Address; readonly last: Address };

/** Parses a `sip` value; undefined when it is not one address, CIDR range or `first-last` range of one family in order. */
export function parseSpan(text: string): AddressSpan | undefined {
  const dash = text.indexOf('-');
  if (dash < 0) {
    const cidr = parseRange(text);
    return cidr ? { cidr } : undefined;
  }
  const first = parseAddress(text.slice(0, dash));
  const last = parseAddress(text.slice(dash + 1));
  if (!first || !last || first.kind() !== last.kind() || compareBytes(first, last) > 0) return undefined;
  return { first, last };
}

export function inSpan(addr: Address, span: AddressSpan): boolean {
  if ('cidr' in span) return inRanges(addr, [span.cidr]);
  if (addr.kind() !== span.first.kind()) return false;
  return compareBytes(span.first, addr) <= 0 && compareBytes(addr, span.last) <= 0;
}

function compareBytes(a: Address, b: Address): number {
  const x = a.toByteArray();
  const y = b.toByteArray();
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}
