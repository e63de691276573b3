// What an open connection costs the server in memory, by what the client left on it:
//   npm run bench:memory -- [--connections 2000] [--modes idle,header,partial] [--budget BYTES]
//   npm run bench:memory -- --idle 19000     (the same as --modes idle --connections 19000)
// Clients connect from 127.0.x.y source addresses, 250 per address, as many clients would.
// Each mode gets a fresh server process (the TLS listener with a dispatch that does no work, the
// same Connection and decoder as the service), so the numbers are the transport's alone. The
// clients live in this process; the server's RSS is read after a forced GC, before the clients
// connect and once they have all delivered their bytes. SECURITY.md's worst case comes from here.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { NO_METRICS } from '../ops/metrics.js';
import { listenerLimits, TlsListener } from '../server/tls-server.js';
import { loadTlsMaterial } from '../tls/tls-files.js';

/**
 * What each client does: `tcp` connects and sends nothing (no TLS handshake: what a silent client
 * holds until the handshake timeout); the others complete the handshake, then send nothing
 * (`idle`), a length header announcing the largest frame (`header`), or all of that frame but its
 * last byte (`partial`).
 */
type Mode = 'tcp' | 'idle' | 'header' | 'partial';
const MODES: readonly Mode[] = ['tcp', 'idle', 'header', 'partial'];

interface Sample {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  readonly buffered: number;
  readonly open: number;
}

type FromServer = { type: 'ready'; port: number; certFile: string } | ({ type: 'sample' } & Sample);

async function serve(dataDir: string, maxFrameBytes: number, budget: number): Promise<void> {
  const send = process.send!.bind(process);
  const config = loadConfig(
    {},
    {
      dataDir,
      port: 0,
      logLevel: 'error',
      maxFrameBytes,
      maxBufferedBytes: budget,
      // Nothing may close the connections while they are counted.
      maxConnections: 1_000_000,
      maxConnectionsPerIp: 1_000_000,
      frameTimeoutMs: 0,
      idleTimeoutMs: 0,
      handshakeTimeoutMs: 120_000,
    },
    undefined,
  );
  const log = createLogger(config.logLevel, pino.destination(2));
  const material = await loadTlsMaterial(config, log);
  let open = 0;
  const listener = new TlsListener({
    key: material.key,
    cert: material.cert,
    dispatch: (message) => ({ id: message.id, code: message.code, status: 'ok' }),
    log,
    ...listenerLimits(config),
    metrics: { ...NO_METRICS, connectionOpened: () => open++, connectionClosed: () => open-- },
  });
  const address = await listener.listen(0, '127.0.0.1');
  const gc = (globalThis as { gc?: () => void }).gc;
  process.on('message', (message) => {
    if (message !== 'sample') return;
    gc?.();
    gc?.();
    setTimeout(() => {
      const m = process.memoryUsage();
      send({ type: 'sample', rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, buffered: listener.buffered.used, open } satisfies FromServer);
    }, 200);
  });
  process.once('disconnect', () => void listener.close(100).finally(() => process.exit(0)));
  send({ type: 'ready', port: address.port, certFile: material.certFile } satisfies FromServer);
}

function ask(child: ChildProcess): Promise<Sample> {
  return new Promise((resolve) => {
    const onMessage = (m: FromServer): void => {
      if (m.type !== 'sample') return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.send('sample');
  });
}

async function connectAll(port: number, ca: Buffer, n: number, mode: Mode, maxFrameBytes: number): Promise<net.Socket[]> {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(maxFrameBytes);
  // All but the last byte of the largest frame the server accepts.
  const body = Buffer.alloc(maxFrameBytes - 1, 0x20);
  const sockets: net.Socket[] = [];
  let made = 0;
  const one = async (): Promise<void> => {
    // Spread over source addresses: one address has ~28,000 ephemeral ports, and a server sees
    // clients from many addresses (127.0.0.0/8 is all loopback on Linux).
    const n = made++;
    const localAddress = `127.0.${1 + Math.floor(n / 250)}.${1 + (n % 250)}`;
    if (mode === 'tcp') {
      const raw = net.connect({ host: '127.0.0.1', port, localAddress });
      raw.on('error', () => {});
      await once(raw, 'connect');
      sockets.push(raw);
      return;
    }
    // localAddress reaches the TCP connect, as for net.connect (tls.ConnectionOptions does not list it).
    const socket = tls.connect({ host: '127.0.0.1', port, ca, checkServerIdentity: () => undefined, ...{ localAddress } } as tls.ConnectionOptions);
    socket.on('error', () => {});
    await once(socket, 'secureConnect');
    if (mode !== 'idle') socket.write(header);
    if (mode === 'partial') socket.write(body);
    sockets.push(socket);
  };
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, one));
  return sockets;
}

async function measure(mode: Mode, n: number, maxFrameBytes: number, budget: number): Promise<void> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-membench-'));
  const child = fork(fileURLToPath(import.meta.url), ['serve', dataDir, String(maxFrameBytes), String(budget)], {
    execArgv: [...process.execArgv, '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const ready = await new Promise<FromServer & { type: 'ready' }>((resolve, reject) => {
      child.once('message', (m: FromServer) => (m.type === 'ready' ? resolve(m) : reject(new Error('unexpected message'))));
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    const ca = readFileSync(ready.certFile);
    // One connection first, so TLS and stream machinery that is set up once is not counted per connection.
    for (const s of await connectAll(ready.port, ca, 1, mode, maxFrameBytes)) s.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const before = await ask(child);
    const sockets = await connectAll(ready.port, ca, n, mode, maxFrameBytes);
    const expected = mode === 'idle' || mode === 'tcp' ? 0 : Math.min(n * maxFrameBytes, budget - (budget % maxFrameBytes));
    // Silent TCP connections never reach the Connection count: wait a moment for them instead.
    const opened = mode === 'tcp' ? 0 : Math.min(n, Math.floor(budget / maxFrameBytes));
    await new Promise((r) => setTimeout(r, 500));
    let after = await ask(child);
    for (let i = 0; i < 50 && (after.open < opened || after.buffered < expected); i++) {
      await new Promise((r) => setTimeout(r, 200));
      after = await ask(child);
    }
    const per = (a: number, b: number): string => ((b - a) / n / 1024).toFixed(1);
    console.log(
      [
        mode.padEnd(8),
        String(after.open).padStart(6),
        `${(after.rss / 2 ** 20).toFixed(0)} MiB`.padStart(9),
        `${per(before.rss, after.rss)} KiB`.padStart(11),
        `${per(before.heapUsed, after.heapUsed)}`.padStart(6),
        `${per(before.external, after.external)}`.padStart(6),
        `${per(before.arrayBuffers, after.arrayBuffers)}`.padStart(6),
        `${(after.buffered / 2 ** 20).toFixed(1)} MiB`.padStart(10),
        `${(before.rss / 2 ** 20).toFixed(0)} MiB`.padStart(9),
      ].join('  '),
    );
    for (const s of sockets) s.destroy();
  } finally {
    child.disconnect();
    await once(child, 'exit');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === 'serve') {
    const [, , , dataDir, maxFrameBytes, budget] = process.argv;
    return serve(dataDir!, Number(maxFrameBytes), Number(budget));
  }
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '2000' },
      idle: { type: 'string' },
      modes: { type: 'string', default: MODES.join(',') },
      'max-frame-bytes': { type: 'string', default: '65536' },
      // Large enough by default that the budget does not cap what is measured.
      budget: { type: 'string', default: String(2 ** 40) },
    },
  });
  const n = Number(values.idle ?? values.connections);
  const modes = (values.idle === undefined ? values.modes : 'idle').split(',') as Mode[];
  for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m}; modes: ${MODES.join(', ')}`);
  const maxFrameBytes = Number(values['max-frame-bytes']);
  const budget = Number(values.budget);
  console.log(`${n} connections, frames of ${maxFrameBytes} bytes, budget ${budget} bytes; per connection: RSS, then heap, external, arrayBuffers in KiB`);
  console.log('mode        open        RSS     RSS/conn    heap     ext  arrbuf    buffered  RSS before');
  for (const mode of modes) await measure(mode, n, maxFrameBytes, budget);
}

main().catch((err: unknown) => {
  process.stderr.write(`memory-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
