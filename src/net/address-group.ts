/**
 * The key every per-address limit counts under (connection cap, rate limits): an IPv4 address as
 * it is, an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as its IPv4 address, and any other IPv6
 * address as its `/v6Prefix` network in RFC 5952 form, e.g. `2001:db8:1:2::/64`. One subscriber
 * usually gets a whole /64 (or more), so keying IPv6 on the full /128 would give each of them
 * 2^64 separate budgets.
 *
 * A zone id (`fe80::1%eth0`) is ignored: it names the interface, not the peer. Text that is not an
 * IP address (e.g. `unknown`) is returned unchanged, so it still counts as one key of its own.
 *
 * Runs per connection and per limited request: one pass over the text, eight numbers, the answer
 * string; no regular expression, no cache.
 */
export function addressGroup(ip: string, v6Prefix: number): string {
  // No colon: IPv4, or not an address at all.
  if (ip.indexOf(':') < 0) return ip;
  const g = parseIpv6(ip);
  if (g === null) return ip;
  // ::ffff:a.b.c.d — how a dual-stack socket reports an IPv4 peer: that peer's IPv4 address.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `${g[6]! >>> 8}.${g[6]! & 0xff}.${g[7]! >>> 8}.${g[7]! & 0xff}`;
  }
  for (let i = 0; i < 8; i++) {
    const keep = v6Prefix - 16 * i;
    if (keep <= 0) g[i] = 0;
    else if (keep < 16) g[i] = g[i]! & (0xffff << (16 - keep)) & 0xffff;
  }
  return `${formatIpv6(g)}/${v6Prefix}`;
}

const COLON = 58;
const DOT = 46;

/** The value of one hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/**
 * The eight 16-bit groups of an IPv6 address in text form (RFC 4291 §2.2: full, `::`-compressed,
 * with a trailing dotted IPv4 part, any case, an optional `%zone`), or null when it is not one.
 */
export function parseIpv6(text: string): number[] | null {
  let end = text.indexOf('%');
  if (end < 0) end = text.length;
  else if (end === text.length - 1) return null; // an empty zone id
  const g = [0, 0, 0, 0, 0, 0, 0, 0];
  let n = 0; // groups written
  let gap = -1; // where `::` stood, in groups
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    // Only `::` may start an address.
    if (text.charCodeAt(1) !== COLON) return null;
    gap = 0;
    i = 2;
    if (i === end) return g; // "::"
  }
  while (i < end) {
    if (n === 8) return null;
    const start = i;
    let value = 0;
    while (i < end && i - start < 4) {
      const d = hexValue(text.charCodeAt(i));
      if (d < 0) break;
      value = value * 16 + d;
      i++;
    }
    const c = i < end ? text.charCodeAt(i) : -1;
    if (c === DOT) {
      // A dotted IPv4 tail stands for the last two groups.
      if (n > 6) return null;
      const v4 = parseIpv4(text, start, end);
      if (v4 < 0) return null;
      g[n++] = v4 >>> 16;
      g[n++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (i === start) return null; // an empty group, or a character that is no hex digit
    g[n++] = value;
    if (i === end) break;
    if (c !== COLON) return null; // a fifth digit, or junk
    i++;
    if (text.charCodeAt(i) === COLON) {
      if (gap >= 0) return null; // a second `::`
      gap = n;
      i++;
      if (i === end) break;
    } else if (i === end) {
      return null; // a single trailing colon
    }
  }
  if (gap < 0) return n === 8 ? g : null;
  // `::` stands for at least one zero group: move the groups after it to the end.
  if (n === 8) return null;
  const tail = n - gap;
  for (let k = 1; k <= tail; k++) {
    g[8 - k] = g[n - k]!;
    g[n - k] = 0;
  }
  for (let k = gap; k < 8 - tail; k++) g[k] = 0;
  return g;
}

/** A dotted-quad IPv4 address in `text[from, end)` as a 32-bit number, or -1. */
function parseIpv4(text: string, from: number, end: number): number {
  let result = 0;
  let parts = 0;
  let i = from;
  while (parts < 4) {
    const start = i;
    let value = 0;
    while (i < end && i - start < 3) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      value = value * 10 + (c - 48);
      i++;
    }
    // No digits, above 255, or a leading zero (RFC 6943 §3.1.1: ambiguous, so refused).
    if (i === start || value > 255 || (i - start > 1 && text.charCodeAt(start) === 48)) return -1;
    result = result * 256 + value;
    parts++;
    if (parts < 4) {
      if (text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
  }
  return i === end ? result : -1;
}

/**
 * RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups (the
 * first of equal runs) written `::`.
 */
export function formatIpv6(g: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === best) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out.length > 0 && !out.endsWith(':')) out += ':';
    out += g[i]!.toString(16);
  }
  return out;
}
