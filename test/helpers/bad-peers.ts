import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';

// Real sockets that are not a good hellwall server: what a client meets when --port, --host or --ca
// is wrong, or the server's certificate is. Each listens on 127.0.0.1:0 and closes at teardown.

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** A self-signed EC certificate (selfsigned, as src/tls makes the dev one) for the given names. */
export async function certificate(opts: { dns?: string[]; ips?: string[]; notBefore?: Date; notAfter?: Date } = {}): Promise<Pem> {
  const altNames = [...(opts.dns ?? []).map((value) => ({ type: 2 as const, value })), ...(opts.ips ?? []).map((ip) => ({ type: 7 as const, ip }))];
  const pems = await generate([{ name: 'commonName', value: opts.dns?.[0] ?? 'test' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ...(opts.notBefore && { notBeforeDate: opts.notBefore }),
    ...(opts.notAfter && { notAfterDate: opts.notAfter }),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

async function listen(t: Teardown, server: net.Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: net.Socket) => s.on('error', () => {}));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

/** Accepts TCP and never says a word. */
export const silentTcp = (t: Teardown): Promise<number> => listen(t, net.createServer(() => {}));

/** A plain-TCP service with a banner, as SMTP or SSH would greet. */
export const bannerTcp = (t: Teardown): Promise<number> => listen(t, net.createServer((s) => s.end('220 not a hellwall server\r\n')));

/** An HTTP server. */
export const httpServer = (t: Teardown): Promise<number> => listen(t, http.createServer((_req, res) => res.end('hello')));

/** A TLS server with this certificate that closes each connection once it is up. */
export const tlsServer = (t: Teardown, pem: Pem): Promise<number> => listen(t, tls.createServer({ cert: pem.cert, key: pem.key }, (s) => s.end()));

/** A TLS server with this certificate that completes the handshake and then never answers. */
export const mutedTlsServer = (t: Teardown, pem: Pem): Promise<number> => listen(t, tls.createServer({ cert: pem.cert, key: pem.key }, () => {}));

/** A port nobody listens on (bound, noted, closed: the kernel refuses connections to it). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
