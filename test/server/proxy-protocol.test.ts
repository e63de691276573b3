import t from 'tap';
import {
  crc32c,
  ProxyHeaderParser,
  V1_MAX_BYTES,
  V2_MAX_BYTES,
  type ProxyHeader,
  type ProxyHeaderErrorCode,
  type ProxyParseResult,
} from '../../src/server/proxy-protocol.js';
import { isTrustedPeer, parseTrustedProxies } from '../../src/net/trusted-proxies.js';
import { mulberry32 } from '../helpers/test-utils.js';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: signature, the two type bytes, the length, then `body` (addresses and TLVs). */
function v2(verCmd: number, fam: number, body: Buffer, length = body.length): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = verCmd;
  fixed[1] = fam;
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([SIG, fixed, body]);
}

const ipv4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));
const ipv6 = (groups: number[]): Buffer => {
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(g, 2 * i));
  return b;
};
const ports = (s: number, d: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(s, 0);
  b.writeUInt16BE(d, 2);
  return b;
};
const tlv = (type: number, value: Buffer): Buffer => {
  const b = Buffer.alloc(3);
  b[0] = type;
  b.writeUInt16BE(value.length, 1);
  return Buffer.concat([b, value]);
};

/** A v2 PROXY header whose CRC32C TLV is correct. */
function withCrc(fam: number, addresses: Buffer, others: Buffer[] = []): Buffer {
  const header = v2(0x21, fam, Buffer.concat([addresses, ...others, tlv(0x03, Buffer.alloc(4))]));
  header.writeUInt32BE(crc32c(header), header.length - 4);
  return header;
}

const TCP4_BODY = Buffer.concat([ipv4('203.0.113.7'), ipv4('192.0.2.1'), ports(56324, 7443)]);
const TCP6_BODY = Buffer.concat([ipv6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), ipv6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]), ports(40000, 443)]);
const TCP4 = { family: 'tcp4', source: { address: '203.0.113.7', port: 56324 }, destination: { address: '192.0.2.1', port: 7443 } };
const TCP6 = { family: 'tcp6', source: { address: '2001:db8::1', port: 40000 }, destination: { address: '2001:db8::2', port: 443 } };

const valid: Array<{ name: string; bytes: Buffer; header: ProxyHeader }> = [
  {
    name: 'v1 TCP4',
    bytes: Buffer.from('PROXY TCP4 203.0.113.7 192.0.2.1 56324 7443\r\n'),
    header: { version: 1, command: 'proxy', ...TCP4 } as ProxyHeader,
  },
  {
    name: 'v1 TCP6 (written uncompressed, upper-case: canonicalized)',
    bytes: Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 40000 443\r\n'),
    header: { version: 1, command: 'proxy', ...TCP6 } as ProxyHeader,
  },
  {
    name: 'v1 TCP4 with the extreme ports',
    bytes: Buffer.from('PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n'),
    header: { version: 1, command: 'proxy', family: 'tcp4', source: { address: '0.0.0.0', port: 0 }, destination: { address: '255.255.255.255', port: 65535 } },
  },
  {
    name: 'v1 TCP6 at its longest',
    bytes: Buffer.from(`PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n`),
    header: {
      version: 1,
      command: 'proxy',
      family: 'tcp6',
      source: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
      destination: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
    },
  },
  { name: 'v1 UNKNOWN', bytes: Buffer.from('PROXY UNKNOWN\r\n'), header: { version: 1, command: 'proxy', family: 'unknown' } },
  {
    name: 'v1 UNKNOWN with addresses, which are ignored, at the 107-byte maximum',
    bytes: Buffer.from(`PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`),
    header: { version: 1, command: 'proxy', family: 'unknown' },
  },
  { name: 'v2 PROXY TCP4', bytes: v2(0x21, 0x11, TCP4_BODY), header: { version: 2, command: 'proxy', ...TCP4 } as ProxyHeader },
  {
    name: 'v2 PROXY TCP4 with TLVs (authority, NOOP padding, a custom type)',
    bytes: v2(0x21, 0x11, Buffer.concat([TCP4_BODY, tlv(0x02, Buffer.from('auth.example')), tlv(0x04, Buffer.alloc(5)), tlv(0xe0, Buffer.alloc(0))])),
    header: { version: 2, command: 'proxy', ...TCP4 } as ProxyHeader,
  },
  { name: 'v2 PROXY TCP4 with a correct CRC32C', bytes: withCrc(0x11, TCP4_BODY, [tlv(0x05, Buffer.from('id'))]), header: { version: 2, command: 'proxy', ...TCP4 } as ProxyHeader },
  { name: 'v2 PROXY TCP6', bytes: v2(0x21, 0x21, TCP6_BODY), header: { version: 2, command: 'proxy', ...TCP6 } as ProxyHeader },
  {
    name: 'v2 PROXY TCP6 with TLVs and CRC32C',
    bytes: withCrc(0x21, TCP6_BODY, [tlv(0x01, Buffer.from('h2')), tlv(0x20, Buffer.alloc(5))]),
    header: { version: 2, command: 'proxy', ...TCP6 } as ProxyHeader,
  },
  {
    name: 'v2 PROXY TCP6 with an IPv4-mapped source (left to normalizeIp)',
    bytes: v2(0x21, 0x21, Buffer.concat([ipv6([0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x7107]), ipv6([0, 0, 0, 0, 0, 0, 0, 1]), ports(1, 2)])),
    header: { version: 2, command: 'proxy', family: 'tcp6', source: { address: '::ffff:203.0.113.7', port: 1 }, destination: { address: '::1', port: 2 } },
  },
  { name: 'v2 LOCAL without addresses', bytes: v2(0x20, 0x00, Buffer.alloc(0)), header: { version: 2, command: 'local', family: 'unknown' } },
  {
    name: 'v2 LOCAL with addresses and an odd family byte, all ignored',
    bytes: v2(0x20, 0xff, TCP4_BODY),
    header: { version: 2, command: 'local', family: 'unknown' },
  },
  { name: 'v2 PROXY UNSPEC', bytes: v2(0x21, 0x00, Buffer.from('whatever')), header: { version: 2, command: 'proxy', family: 'unknown' } },
  {
    name: `v2 at the ${V2_MAX_BYTES}-byte cap`,
    bytes: v2(0x21, 0x11, Buffer.concat([TCP4_BODY, tlv(0x04, Buffer.alloc(V2_MAX_BYTES - 16 - 12 - 3))])),
    header: { version: 2, command: 'proxy', ...TCP4 } as ProxyHeader,
  },
];

/** Feeds the chunks; returns the first final result and everything returned as `rest`. */
function feed(chunks: Buffer[], end = false): { result: ProxyParseResult; rest: Buffer; finalAt: number } {
  const p = new ProxyHeaderParser();
  let result: ProxyParseResult = { status: 'incomplete' };
  const rest: Buffer[] = [];
  let finalAt = -1;
  chunks.forEach((chunk, i) => {
    const r = p.push(chunk);
    if (r.status === 'done') rest.push(r.rest);
    if (r.status !== 'incomplete' && finalAt === -1) {
      finalAt = i;
      result = r;
    }
  });
  if (end && finalAt === -1) result = p.end();
  return { result, rest: Buffer.concat(rest), finalAt };
}

function splits(bytes: Buffer, random: () => number): Array<{ how: string; chunks: Buffer[] }> {
  const out = [
    { how: 'whole', chunks: [bytes] },
    { how: 'byte at a time', chunks: [...bytes].map((b) => Buffer.from([b])) },
  ];
  for (let at = 1; at < bytes.length; at++) out.push({ how: `split at ${at}`, chunks: [bytes.subarray(0, at), bytes.subarray(at)] });
  for (let n = 0; n < 20; n++) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; ) {
      const len = 1 + Math.floor(random() * 40);
      chunks.push(bytes.subarray(at, at + len));
      at += len;
    }
    out.push({ how: `random chunks #${n}`, chunks });
  }
  return out;
}

// What follows the header: a TLS ClientHello would start like this.
const PAYLOAD = Buffer.from('160301020001fe0303deadbeef', 'hex');

t.test('valid headers parse to the same result however they are split, and the bytes after come back intact', async (t) => {
  const random = mulberry32(7);
  for (const c of valid) {
    const bytes = Buffer.concat([c.bytes, PAYLOAD]);
    let failures = 0;
    for (const { how, chunks } of splits(bytes, random)) {
      const { result, rest } = feed(chunks);
      const ok = result.status === 'done' && JSON.stringify(result.header) === JSON.stringify(c.header) && rest.equals(PAYLOAD);
      if (!ok) {
        failures++;
        t.fail(`${c.name}, ${how}: ${JSON.stringify(result)} rest=${rest.toString('hex')}`);
      }
    }
    t.equal(failures, 0, `${c.name}: every split`);
    const alone = feed([c.bytes]);
    t.same(alone.result, { status: 'done', header: c.header, rest: Buffer.alloc(0) }, `${c.name}: alone, nothing after`);
  }
});

t.test('a header is reported on the byte that completes it, not before', async (t) => {
  t.equal(valid.find((c) => c.name.includes('107-byte'))!.bytes.length, V1_MAX_BYTES, 'the longest v1 case is exactly the maximum');
  for (const c of valid) {
    const { finalAt } = feed([...c.bytes].map((b) => Buffer.from([b])));
    t.equal(finalAt, c.bytes.length - 1, c.name);
  }
});

const v1 = (line: string): Buffer => Buffer.from(line, 'latin1');

const malformed: Array<{ name: string; bytes: Buffer; code: ProxyHeaderErrorCode; end?: boolean }> = [
  { name: 'a TLS ClientHello (no header at all)', bytes: PAYLOAD, code: 'not-proxy' },
  { name: 'an HTTP request', bytes: v1('GET / HTTP/1.1\r\n\r\n'), code: 'not-proxy' },
  { name: 'a misspelt v1 signature', bytes: v1('PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), code: 'not-proxy' },
  { name: 'v1 in lower case', bytes: v1('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'), code: 'not-proxy' },
  { name: 'a v2 signature with one byte wrong', bytes: Buffer.concat([SIG.subarray(0, 11), Buffer.from([0x0b]), Buffer.alloc(8)]), code: 'not-proxy' },
  { name: 'v1 without CRLF within 107 bytes', bytes: v1('PROXY UNKNOWN ' + 'x'.repeat(200)), code: 'v1-too-long' },
  { name: 'v1 of 108 bytes, CRLF included', bytes: v1('PROXY UNKNOWN ' + 'x'.repeat(V1_MAX_BYTES - 14 - 1) + '\r\n'), code: 'v1-too-long' },
  { name: 'v1 ended by LF alone', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'), code: 'v1-syntax' },
  { name: 'v1 with an unknown protocol', bytes: v1('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n'), code: 'v1-syntax' },
  { name: 'v1 with a double space', bytes: v1('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'), code: 'v1-syntax' },
  { name: 'v1 with a missing port', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), code: 'v1-syntax' },
  { name: 'v1 with a trailing space', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n'), code: 'v1-syntax' },
  { name: 'v1 with nothing after PROXY', bytes: v1('PROXY \r\n'), code: 'v1-syntax' },
  { name: 'v1 TCP4 with an octet over 255', bytes: v1('PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 TCP4 with a leading zero', bytes: v1('PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 TCP4 with an IPv6 address', bytes: v1('PROXY TCP4 ::1 5.6.7.8 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 TCP6 with an IPv4 address', bytes: v1('PROXY TCP6 1.2.3.4 ::1 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 TCP6 with a zone id', bytes: v1('PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 with a host name', bytes: v1('PROXY TCP4 localhost 5.6.7.8 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 with a bad destination', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n'), code: 'bad-address' },
  { name: 'v1 port out of range', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), code: 'bad-port' },
  { name: 'v1 negative port', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n'), code: 'bad-port' },
  { name: 'v1 port with a leading zero', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'), code: 'bad-port' },
  { name: 'v1 port that is not a number', bytes: v1('PROXY TCP4 1.2.3.4 5.6.7.8 http 2\r\n'), code: 'bad-port' },
  { name: 'v2 version 1', bytes: v2(0x11, 0x11, TCP4_BODY), code: 'v2-version' },
  { name: 'v2 version 3', bytes: v2(0x31, 0x11, TCP4_BODY), code: 'v2-version' },
  { name: 'v2 command 2', bytes: v2(0x22, 0x11, TCP4_BODY), code: 'v2-command' },
  { name: 'v2 family 4 (undefined)', bytes: v2(0x21, 0x41, TCP4_BODY), code: 'v2-family' },
  { name: 'v2 transport 3 (undefined)', bytes: v2(0x21, 0x13, TCP4_BODY), code: 'v2-family' },
  { name: 'v2 UDP over IPv4', bytes: v2(0x21, 0x12, TCP4_BODY), code: 'v2-family' },
  { name: 'v2 UNIX stream', bytes: v2(0x21, 0x31, Buffer.alloc(216)), code: 'v2-family' },
  { name: 'v2 TCP4 with an address block too short', bytes: v2(0x21, 0x11, TCP4_BODY.subarray(0, 11)), code: 'v2-length' },
  { name: 'v2 TCP6 with an IPv4-sized address block', bytes: v2(0x21, 0x21, TCP4_BODY), code: 'v2-length' },
  { name: 'v2 one byte over the cap', bytes: v2(0x21, 0x11, Buffer.alloc(0), V2_MAX_BYTES - 16 + 1), code: 'v2-too-long' },
  { name: 'v2 with the largest length the format allows', bytes: v2(0x21, 0x11, Buffer.alloc(0), 65535), code: 'v2-too-long' },
  { name: 'v2 LOCAL over the cap', bytes: v2(0x20, 0x00, Buffer.alloc(0), 65535), code: 'v2-too-long' },
  { name: 'v2 TLV running past the header', bytes: v2(0x21, 0x11, Buffer.concat([TCP4_BODY, Buffer.from([0x02, 0x00, 0x09, 0x61])])), code: 'v2-tlv' },
  { name: 'v2 TLV header cut short', bytes: v2(0x21, 0x11, Buffer.concat([TCP4_BODY, Buffer.from([0x04, 0x00])])), code: 'v2-tlv' },
  { name: 'v2 CRC32C TLV of the wrong size', bytes: v2(0x21, 0x11, Buffer.concat([TCP4_BODY, tlv(0x03, Buffer.alloc(3))])), code: 'v2-tlv' },
  {
    name: 'v2 CRC32C that does not match',
    bytes: (() => {
      const h = withCrc(0x11, TCP4_BODY);
      h[16] ^= 1; // a different source address than the one checksummed
      return h;
    })(),
    code: 'v2-crc',
  },
  { name: 'v1 cut short', bytes: v1('PROXY TCP4 1.2.3.4 5.6'), code: 'truncated', end: true },
  { name: 'v1 signature cut short', bytes: v1('PRO'), code: 'truncated', end: true },
  { name: 'v2 fixed part cut short', bytes: v2(0x21, 0x11, TCP4_BODY).subarray(0, 14), code: 'truncated', end: true },
  { name: 'v2 addresses cut short', bytes: v2(0x21, 0x11, TCP4_BODY).subarray(0, 20), code: 'truncated', end: true },
  { name: 'nothing at all', bytes: Buffer.alloc(0), code: 'truncated', end: true },
];

t.test('malformed headers fail with a defined code, however they are split', async (t) => {
  const random = mulberry32(11);
  for (const c of malformed) {
    let failures = 0;
    const cases = c.bytes.length > 0 ? splits(c.bytes, random) : [{ how: 'empty', chunks: [] }];
    for (const { how, chunks } of cases) {
      const { result } = feed(chunks, c.end);
      if (result.status !== 'error' || result.error.code !== c.code) {
        failures++;
        t.fail(`${c.name}, ${how}: ${JSON.stringify(result)}`);
      }
    }
    t.equal(failures, 0, `${c.name}: ${c.code}`);
  }
});

t.test('a bad signature fails on its first wrong byte, and an oversized v2 length on the 16th', async (t) => {
  t.equal(feed([...PAYLOAD].map((b) => Buffer.from([b]))).finalAt, 0, 'a TLS record: at once');
  t.equal(feed([...v1('PROXZ')].map((b) => Buffer.from([b]))).finalAt, 4);
  const huge = v2(0x21, 0x11, Buffer.alloc(0), 65535);
  const { result, finalAt } = feed([...huge].map((b) => Buffer.from([b])));
  t.equal(finalAt, 15, 'no waiting for (or buffering of) the 64 KiB announced');
  t.equal(result.status === 'error' && result.error.code, 'v2-too-long');
});

t.test('errors are final; after a header every further chunk is payload', async (t) => {
  const p = new ProxyHeaderParser();
  const bad = p.push(Buffer.from('HELLO'));
  t.equal(bad.status, 'error');
  t.same(p.push(v1('PROXY UNKNOWN\r\n')), bad, 'a valid header after an error does not revive it');
  t.same(p.end(), bad);

  const q = new ProxyHeaderParser();
  const done = q.push(v1('PROXY UNKNOWN\r\nab'));
  t.same(done, { status: 'done', header: { version: 1, command: 'proxy', family: 'unknown' }, rest: Buffer.from('ab') });
  t.same(q.push(Buffer.from('PROXY again')), { status: 'done', header: { version: 1, command: 'proxy', family: 'unknown' }, rest: Buffer.from('PROXY again') });
  t.equal(q.end().status, 'done', 'ending after the header is no error');
});

t.test('random input never throws, and never yields a header that was not sent', async (t) => {
  const random = mulberry32(2026);
  const prefixes = [Buffer.alloc(0), SIG, Buffer.concat([SIG, Buffer.from([0x21, 0x11])]), Buffer.concat([SIG, Buffer.from([0x21, 0x21, 0x00, 0x24])]), v1('PROXY '), v1('PROXY TCP4 ')];
  let done = 0;
  for (let n = 0; n < 3000; n++) {
    const prefix = prefixes[n % prefixes.length]!;
    const noise = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
    const bytes = Buffer.concat([prefix, noise]);
    const p = new ProxyHeaderParser();
    let at = 0;
    let result: ProxyParseResult = { status: 'incomplete' };
    while (at < bytes.length && result.status === 'incomplete') {
      const len = 1 + Math.floor(random() * 64);
      result = p.push(bytes.subarray(at, at + len));
      at += len;
    }
    if (result.status === 'incomplete') result = p.end();
    if (result.status === 'done') {
      done++;
      // Only the v2 prefixes with a valid family can complete on noise; the address must be what was sent.
      if (result.header.family === 'tcp4') t.equal(result.header.source.address, [...bytes.subarray(16, 20)].join('.'));
    }
  }
  t.pass(`3000 random inputs, ${done} parsed as headers, none threw`);
});

t.test('crc32c is CRC-32C (Castagnoli)', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'the standard check value');
  t.equal(crc32c(Buffer.alloc(0)), 0);
});

t.test('the trusted list takes addresses and CIDR prefixes, IPv4 and IPv6', async (t) => {
  t.equal(parseTrustedProxies(''), null, 'empty: off');
  t.equal(parseTrustedProxies(' , '), null, 'only separators: off');
  const list = parseTrustedProxies(' 10.0.0.0/8, 192.0.2.7,fd00::/8 , ::ffff:198.51.100.0/120, 2001:db8::5 ')!;
  const yes = ['10.0.0.1', '10.255.255.255', '192.0.2.7', 'fd00::1', 'fdff:ffff::1', '198.51.100.200', '2001:db8::5'];
  const no = ['11.0.0.1', '192.0.2.8', 'fe00::1', '198.51.101.1', '2001:db8::6', '127.0.0.1', 'unknown', '', 'not an address'];
  for (const ip of yes) t.ok(isTrustedPeer(list, ip), `${ip} is trusted`);
  for (const ip of no) t.notOk(isTrustedPeer(list, ip), `${ip} is not trusted`);
  const mapped = parseTrustedProxies('::ffff:127.0.0.1')!;
  t.ok(isTrustedPeer(mapped, '127.0.0.1'), 'an IPv4-mapped entry trusts the IPv4 peer (peers are normalized to IPv4)');
  t.ok(isTrustedPeer(parseTrustedProxies('0.0.0.0/0')!, '203.0.113.9'));
});

t.test('a bad entry in the trusted list is refused, naming the entry', async (t) => {
  for (const entry of ['10.0.0.0/33', 'fd00::/129', 'proxy.example.com', '10.0.0.0/8/8', '10.0.0.0/', '/8', '10.0.0.0/+8', '10.0.0.0/-1', '10.0.0.0/ 8', 'fe80::1%eth0', '10.0.0.256', '10.0.0', '*']) {
    t.throws(() => parseTrustedProxies(`192.0.2.1, ${entry}`), { message: new RegExp(`^'${entry.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}' is not an IPv4 or IPv6 address or CIDR prefix`) }, entry);
  }
});
