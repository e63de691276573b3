import { BlockList, isIP } from 'node:net';

// The `proxy.trusted` list: which peers may name the client in a PROXY protocol header. Here, below
// both the configuration (which refuses a bad list at start-up) and the listener (which checks each
// peer against the parsed list), so that neither imports the other's layer.

/**
 * Parses `proxy.trusted`: comma-separated IPv4/IPv6 addresses and CIDR prefixes. Returns null when
 * the list is empty (PROXY protocol off); throws an Error naming the first bad entry.
 *
 * IPv4-mapped IPv6 entries (`::ffff:192.0.2.7`, `::ffff:10.0.0.0/104`) are stored as the IPv4
 * address or prefix they stand for, since peers are checked in the normalized form of
 * `normalizeIp` (mapped addresses become IPv4).
 */
export function parseTrustedProxies(list: string): BlockList | null {
  const blocks = new BlockList();
  let entries = 0;
  for (const raw of list.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const bad = (): never => {
      throw new Error(`'${entry}' is not an IPv4 or IPv6 address or CIDR prefix (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)`);
    };
    const slash = entry.indexOf('/');
    let address = slash === -1 ? entry : entry.slice(0, slash);
    const prefixText = slash === -1 ? null : entry.slice(slash + 1);
    if (address.includes('%')) bad();
    let family = isIP(address);
    if (family === 0) bad();
    let prefix = family === 4 ? 32 : 128;
    if (prefixText !== null) {
      if (!/^\d{1,3}$/.test(prefixText)) bad();
      prefix = Number(prefixText);
      if (prefix > (family === 4 ? 32 : 128)) bad();
    }
    const mapped = family === 6 ? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address) : null;
    if (mapped && prefix >= 96) {
      address = mapped[1]!;
      family = 4;
      prefix -= 96;
    }
    blocks.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
    entries++;
  }
  return entries === 0 ? null : blocks;
}

/** Whether `ip` (normalized by normalizeIp) is in the trusted list. Never throws. */
export function isTrustedPeer(trusted: BlockList, ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  try {
    return trusted.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  } catch {
    return false;
  }
}
