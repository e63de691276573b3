import { isIP } from 'node:net';
import t from 'tap';
import { addressGroup, formatIpv6, parseIpv6 } from '../../src/net/address-group.js';
import { mulberry32 } from '../helpers/test-utils.js';

t.test('IPv4 addresses are their own group, whatever the prefix', async (t) => {
  for (const prefix of [32, 64, 128]) {
    t.equal(addressGroup('203.0.113.7', prefix), '203.0.113.7');
    t.equal(addressGroup('127.0.0.1', prefix), '127.0.0.1');
  }
  t.equal(addressGroup('unknown', 64), 'unknown', 'not an address: returned as is');
});

t.test('IPv4-mapped IPv6 addresses are the IPv4 address, in every spelling', async (t) => {
  for (const mapped of ['::ffff:203.0.113.7', '::FFFF:203.0.113.7', '0:0:0:0:0:ffff:203.0.113.7', '::ffff:cb00:7107', '0000:0000:0000:0000:0000:FFFF:CB00:7107']) {
    t.equal(addressGroup(mapped, 64), '203.0.113.7', mapped);
    t.equal(addressGroup(mapped, 128), '203.0.113.7', `${mapped} /128`);
  }
  t.equal(addressGroup('::ffff:0:203.0.113.7', 64), '::/64', 'IPv4-translated (::ffff:0:0/96) is not mapped');
  t.equal(addressGroup('64:ff9b::203.0.113.7', 96), '64:ff9b::/96', 'nor is NAT64');
});

t.test('other IPv6 addresses become their /prefix network in RFC 5952 form', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:0003:0004:0005:0006', 64, '2001:db8:1:2::/64'],
    ['2001:db8:1:2::7', 64, '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', 64, '2001:db8:1:2::/64'],
    ['2001:db8:1:3::1', 64, '2001:db8:1:3::/64'],
    ['2001:db8::1', 64, '2001:db8::/64'],
    ['::1', 64, '::/64'],
    ['::', 64, '::/64'],
    ['2001:db8:1:2:3:4:5:6', 48, '2001:db8:1::/48'],
    ['2001:db8:1:ffff::1', 48, '2001:db8:1::/48'],
    ['2001:db8:abcd:12ff::1', 56, '2001:db8:abcd:1200::/56'],
    ['2001:db8:1:2:3:4:5:6', 128, '2001:db8:1:2:3:4:5:6/128'],
    ['2001:DB8:0:0:1:0:0:1', 128, '2001:db8::1:0:0:1/128'],
    ['2001:db8:0:0:1::1', 128, '2001:db8::1:0:0:1/128'],
    ['2001:db8:0:1:1:1:1:1', 128, '2001:db8:0:1:1:1:1:1/128'],
    ['fe80::1%eth0', 64, 'fe80::/64'],
    ['fe80::abcd:1%25', 128, 'fe80::abcd:1/128'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 33, 'ffff:ffff:8000::/33'],
    ['1:2:3:4:5:6:7:8', 32, '1:2::/32'],
  ];
  for (const [ip, prefix, group] of cases) t.equal(addressGroup(ip, prefix), group, `${ip} /${prefix}`);
  t.equal(addressGroup('2001:db8:1:2::1', 64), addressGroup('2001:db8:1:2:ffff::', 64), 'one /64, one group');
  t.not(addressGroup('2001:db8:1:2::1', 128), addressGroup('2001:db8:1:2::2', 128), '/128: every address apart');
});

t.test('text that is not an IPv6 address is returned unchanged', async (t) => {
  for (const bad of ['1:2:3:4:5:6:7:8:9', '1::2::3', ':1:2', '1:2:', '12345::', 'g::1', '::ffff:1.2.3', '::ffff:1.2.3.256', '::ffff:01.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%', '1:2:3:4:5:6:7::8']) {
    t.equal(addressGroup(bad, 64), bad, bad);
  }
});

t.test('the parser agrees with node:net on random addresses and mutations of them, and formats as URL does (seeded)', async (t) => {
  const rng = mulberry32(0x64);
  const int = (n: number): number => Math.floor(rng() * n);
  let disagreements = 0;
  const examples: string[] = [];
  for (let n = 0; n < 20_000; n++) {
    const groups = Array.from({ length: 8 }, () => (int(3) === 0 ? 0 : int(3) === 0 ? int(16) : int(65536)));
    const full = groups.map((g) => g.toString(16)).join(':');
    const canonical = new URL(`http://[${full}]`).hostname.slice(1, -1);
    const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
    if (parseIpv6(full)?.join() !== groups.join() || parseIpv6(canonical.toUpperCase())?.join() !== groups.join()) disagreements++;
    if (!mapped && formatIpv6(groups) !== canonical) {
      disagreements++;
      examples.push(`format ${formatIpv6(groups)} vs ${canonical}`);
    }
    const chars = canonical.split('');
    chars.splice(int(chars.length + 1), int(2), ':.0fG%x'[int(7)]!);
    const mutated = chars.join('');
    if ((parseIpv6(mutated) !== null) !== (isIP(mutated) === 6)) {
      disagreements++;
      examples.push(`validity of ${mutated}`);
    }
  }
  t.same(examples.slice(0, 5), []);
  t.equal(disagreements, 0, '20,000 addresses');
});

t.test('cheap enough for every connection and every limited request', async (t) => {
  const started = performance.now();
  let length = 0;
  for (let i = 0; i < 100_000; i++) length += addressGroup(`2001:db8:85a3:${i & 0xffff}:1319:8a2e:370:7348`, 64).length;
  const perCall = ((performance.now() - started) * 1000) / 100_000;
  t.ok(length > 0);
  // About 0.3 µs here; the bound leaves room for a loaded CI machine.
  t.ok(perCall < 5, `${perCall.toFixed(2)} µs per IPv6 address`);
});
