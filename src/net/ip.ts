import { isIP } from 'node:net';

/**
 * The address the server sees, in one canonical text form: IPv4-mapped IPv6 (`::ffff:192.0.2.1`,
 * what a dual-stack socket reports) becomes plain IPv4, so binding does not depend on the socket
 * family.
 */
export function normalizeIp(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1]!;
  return isIP(ip) === 6 ? ip.toLowerCase() : ip;
}
