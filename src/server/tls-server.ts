import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { normalizeIp } from '../auth/normalize.js';
import type { Config } from '../config.js';
import type { Logger } from '../deps.js';
import { Connection } from './connection.js';
import type { DispatchFn } from './dispatcher.js';
import { NO_METRICS, type Metrics } from '../ops/metrics.js';

// TLS 1.3 suites first, then TLS 1.2 with forward secrecy and AEAD only (Mozilla "intermediate").
export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export interface ListenerOptions {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly dispatch: DispatchFn;
  readonly log: Logger;
  readonly maxFrameBytes: number;
  readonly maxInflight: number;
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly aroundRead?: <T>(handle: () => T) => T;
  readonly metrics?: Metrics;
}

type ConfigLimits = Pick<ListenerOptions, 'maxFrameBytes' | 'maxInflight' | 'maxConnections' | 'idleTimeoutMs' | 'handshakeTimeoutMs'>;

/** The listener settings that come from config: the service and the benchmark's echo share them. */
export function listenerLimits(config: Config): ConfigLimits {
  return {
    maxFrameBytes: config.maxFrameBytes,
    maxInflight: config.maxInflight,
    maxConnections: config.maxConnections,
    idleTimeoutMs: config.idleTimeoutMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
  };
}

/** The TLS listener: one Connection per socket, tracked so shutdown can drain them. */
export class TlsListener {
  readonly #server: tls.Server;
  readonly #connections = new Set<Connection>();
  /** Every TCP socket, handshaking or not: a half-open handshake would otherwise hold up close(). */
  readonly #sockets = new Set<Socket>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  #nextId = 1;
  #closing = false;

  constructor(opts: ListenerOptions) {
    this.#log = opts.log;
    this.#metrics = opts.metrics ?? NO_METRICS;
    this.#server = tls.createServer(
      {
        key: opts.key,
        cert: opts.cert,
        minVersion: 'TLSv1.2',
        ciphers: CIPHERS,
        honorCipherOrder: true,
        handshakeTimeout: opts.handshakeTimeoutMs,
        // Let a client half-close after its last request and still read the answers.
        allowHalfOpen: true,
      },
      (socket) => this.#accept(socket, opts),
    );
    this.#server.maxConnections = opts.maxConnections;
    this.#server.on('connection', (raw: Socket) => {
      this.#sockets.add(raw);
      raw.once('close', () => this.#sockets.delete(raw));
    });
    let dropped = 0;
    let droppedLoggedAt = -Infinity;
    this.#server.on('drop', (data) => {
      this.#metrics.connectionRefused('max_connections');
      // A flood of refusals must not become a flood of log lines: at most one every 10 s.
      dropped++;
      const now = performance.now();
      if (now - droppedLoggedAt < 10_000) return;
      droppedLoggedAt = now;
      this.#log.warn({ ip: normalizeIp(data?.remoteAddress), max: opts.maxConnections, refused: dropped }, 'connections refused: too many open connections');
      dropped = 0;
    });
    this.#server.on('tlsClientError', (err, socket) => {
      this.#metrics.connectionRefused('tls_handshake');
      this.#log.info({ err: err.message, ip: normalizeIp(socket.remoteAddress) }, 'TLS handshake failed');
    });
  }

  #accept(socket: tls.TLSSocket, opts: ListenerOptions): void {
    const ip = normalizeIp(socket.remoteAddress);
    const log = opts.log.child({ conn: this.#nextId++, ip });
    socket.setNoDelay(true);
    if (opts.idleTimeoutMs > 0) {
      socket.setTimeout(opts.idleTimeoutMs, () => {
        log.info('idle timeout; closing connection');
        this.#metrics.connectionRefused('idle_timeout');
        socket.destroy();
      });
    }
    const conn = new Connection(socket, {
      dispatch: opts.dispatch,
      log,
      ip,
      maxFrameBytes: opts.maxFrameBytes,
      maxInflight: opts.maxInflight,
      ...(opts.aroundRead && { aroundRead: opts.aroundRead }),
      onFramingError: () => this.#metrics.connectionRefused('framing_error'),
    });
    this.#connections.add(conn);
    this.#metrics.connectionOpened();
    // A handshake that completes after shutdown began: answer nothing new, close promptly.
    if (this.#closing) conn.shutdown();
    log.debug({ protocol: socket.getProtocol(), cipher: socket.getCipher().name }, 'connection open');
    void conn.closed.then(() => {
      this.#connections.delete(conn);
      this.#metrics.connectionClosed();
      log.debug('connection closed');
    });
  }

  /** New connections get this certificate; open ones keep theirs (no connection is dropped). */
  setCertificate(key: Buffer, cert: Buffer): void {
    // A new context would get new session-ticket keys; keep the old ones so clients still resume.
    const tickets = this.#server.getTicketKeys();
    this.#server.setSecureContext({ key, cert, minVersion: 'TLSv1.2', ciphers: CIPHERS, honorCipherOrder: true });
    this.#server.setTicketKeys(tickets);
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting, lets every connection answer what it already received, and waits for them to
   * close; after `graceMs` whatever is left is destroyed.
   */
  async close(graceMs = 5000): Promise<void> {
    this.#closing = true;
    const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const conn of this.#connections) conn.shutdown();
    const drained = Promise.all([...this.#connections].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), graceMs);
    });
    if ((await Promise.race([drained, timeout])) === 'timeout') {
      this.#log.warn({ open: this.#connections.size }, 'shutdown grace elapsed; destroying connections');
      for (const conn of this.#connections) conn.destroy();
      await drained;
    }
    clearTimeout(timer);
    // Let the raw sockets of connections that just closed report it, so the sweep below only
    // reaches sockets that have no connection.
    await new Promise((resolve) => setImmediate(resolve));
    // What is left never finished its handshake (e.g. a client that gave up half way, which with
    // allowHalfOpen lingers until the handshake timeout): nothing is owed to it.
    for (const raw of this.#sockets) raw.destroy();
    await stopped;
  }
}
