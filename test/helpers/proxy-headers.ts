import { once } from 'node:events';
import net from 'node:net';

/** PROXY protocol headers as a balancer would send them (test/integration/proxy.test.ts, limits.test.ts). */

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v1 header naming `client`. */
export const v1 = (family: 'TCP4' | 'TCP6', client: string, server = family === 'TCP4' ? '127.0.0.1' : '::1'): Buffer =>
  Buffer.from(`PROXY ${family} ${client} ${server} 50000 7443\r\n`);

/** A v2 header; `addresses` as raw bytes (source, destination, ports), or none for LOCAL/UNSPEC. */
export function v2(command: 'proxy' | 'local', fam: number, addresses: Buffer = Buffer.alloc(0)): Buffer {
  const fixed = Buffer.from([command === 'proxy' ? 0x21 : 0x20, fam, 0, 0]);
  fixed.writeUInt16BE(addresses.length, 2);
  return Buffer.concat([SIG, fixed, addresses]);
}

/** A v2 TCP over IPv4 header naming `client` (dotted quad). */
export const v2Tcp4 = (client: string): Buffer =>
  v2('proxy', 0x11, Buffer.from([...client.split('.').map(Number), 127, 0, 0, 1, 0xc3, 0x50, 0x1d, 0x13]));

/** A v2 TCP over IPv6 header; `groups`: the eight 16-bit groups of the client's IPv6 address. */
export const v2Tcp6 = (groups: number[]): Buffer => {
  const body = Buffer.alloc(36);
  groups.forEach((g, i) => body.writeUInt16BE(g, 2 * i));
  body.writeUInt16BE(1, 30); // destination ::1
  body.writeUInt16BE(50000, 32);
  body.writeUInt16BE(7443, 34);
  return v2('proxy', 0x21, body);
};

/** A TCP connection to `port` from `localAddress`, with `header` written first (the balancer's part). */
export async function rawWithHeader(port: number, header: Buffer, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  // The server may reset connections it refuses; the tests look at 'close', not at the error.
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(header);
  return socket;
}

/** Resolves when the socket closes, reset or not (events.once would reject on the reset's 'error'). */
export function closed(socket: net.Socket): Promise<void> {
  socket.resume();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
