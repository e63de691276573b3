import net, { type AddressInfo, type BlockList, type Socket } from 'node:net';
import { constants as cryptoConstants } from 'node:crypto';
import tls from 'node:tls';
import type { Config } from '../config.js';
import type { Logger } from '../deps.js';
import { addressGroup } from '../net/address-group.js';
import { BufferBudget } from './buffer-budget.js';
import { Connection, type ConnectionOptions } from './connection.js';
import type { DispatchFn } from './dispatcher.js';
import { normalizeIp } from '../net/ip.js';
import { isTrustedPeer } from '../net/trusted-proxies.js';
import { NO_METRICS, type Metrics } from '../ops/metrics.js';
import { ProxyHeaderParser, type ProxyHeaderError } from './proxy-protocol.js';

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

/**
 * The TLS settings every secure context gets (at start and on each certificate reload): TLS 1.2
 * minimum, the suites above in the server's order, and no renegotiation — a client-initiated TLS 1.2
 * renegotiation costs the server a handshake for nothing and has a history of vulnerabilities.
 */
const TLS_POLICY = {
  minVersion: 'TLSv1.2',
  ciphers: CIPHERS,
  honorCipherOrder: true,
  secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
} as const;

/**
 * Logs refusals of one kind at most once every 10 s, with how many there were since the last line:
 * a flood of refused connections must not become a flood of log lines.
 */
class RefusalLog {
  #count = 0;
  #loggedAt = -Infinity;
  constructor(
    readonly log: Logger,
    readonly msg: string,
  ) {}

  refused(fields: Record<string, unknown>): void {
    this.#count++;
    const now = performance.now();
    if (now - this.#loggedAt < 10_000) return;
    this.#loggedAt = now;
    this.log.warn({ ...fields, refused: this.#count }, this.msg);
    this.#count = 0;
  }
}

export interface ListenerOptions {
  readonly key: Buffer;
  readonly cert: Buffer;
  readonly dispatch: DispatchFn;
  readonly log: Logger;
  readonly maxFrameBytes: number;
  readonly maxInflight: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /**
   * `limits.ipv6Prefix`: IPv6 clients count against `maxConnectionsPerIp` per network of this
   * prefix length (64: each /64), IPv4 clients per address (addressGroup).
   */
  readonly ipv6Prefix: number;
  /** [P-1.8] Bytes all connections together may hold for partial frames. */
  readonly maxBufferedBytes: number;
  readonly frameTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  readonly aroundRead?: <T>(handle: () => T) => T;
  readonly metrics?: Metrics;
  /**
   * `proxy.trusted`, parsed once by the caller (parseTrustedProxies): the peers that must start each
   * connection with a PROXY protocol header naming the client. Null or absent: PROXY protocol off.
   */
  readonly trustedProxies?: BlockList | null;
}

/** A connection whose client address came from a PROXY header. */
interface Proxied {
  /** The client, from the header. */
  readonly ip: string;
  /** The balancer that sent the header. */
  readonly via: string;
}

/**
 * A TCP connection's 4-tuple. A TLS socket reports its TCP connection's addresses and ports
 * (public getters), and no two open TCP connections share a 4-tuple, so this names the raw socket
 * under a TLS socket without reaching into the TLS socket's private fields.
 */
const tupleKey = (s: Socket): string => `${s.remoteAddress} ${s.remotePort} ${s.localAddress} ${s.localPort}`;

type ConfigLimits = Pick<
  ListenerOptions,
  | 'maxFrameBytes'
  | 'maxInflight'
  | 'maxConnections'
  | 'maxConnectionsPerIp'
  | 'ipv6Prefix'
  | 'maxBufferedBytes'
  | 'idleTimeoutMs'
  | 'handshakeTimeoutMs'
  | 'frameTimeoutMs'
>;

/** The parts of the configuration the listener's settings come from. */
export type ListenerConfig = Pick<
  Config,
  | 'maxFrameBytes'
  | 'maxInflight'
  | 'maxConnections'
  | 'maxConnectionsPerIp'
  | 'maxBufferedBytes'
  | 'frameTimeoutMs'
  | 'idleTimeoutMs'
  | 'handshakeTimeoutMs'
> & { readonly limits: Pick<Config['limits'], 'ipv6Prefix'> };

/** The listener settings that come from config: the service and the benchmark's echo share them. */
export function listenerLimits(config: ListenerConfig): ConfigLimits {
  return {
    maxFrameBytes: config.maxFrameBytes,
    maxInflight: config.maxInflight,
    maxConnections: config.maxConnections,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    ipv6Prefix: config.limits.ipv6Prefix,
    maxBufferedBytes: config.maxBufferedBytes,
    frameTimeoutMs: config.frameTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
  };
}

/**
 * The TLS listener: one Connection per socket, tracked so shutdown can drain them.
 *
 * With PROXY protocol on (`trustedProxies`), a plain TCP server owns the port instead and hands each
 * socket to the TLS server (`emit('connection')`, the documented way to give a tls.Server a socket
 * it did not accept); from a trusted peer, only after reading the PROXY header off the raw stream
 * and putting back whatever followed it. TLS itself (handshake timeout, handshake-failure logging,
 * certificate reload, session tickets) stays entirely the tls.Server's, unchanged. The client
 * address reaches #accept through #proxied, keyed by the TCP 4-tuple. With PROXY protocol off there
 * is no front server and the path is exactly the plain tls.Server one.
 */
export class TlsListener {
  readonly #server: tls.Server;
  /**
   * The plain TCP server that accepts connections and hands them to #server: it admits a socket
   * (the per-address cap) before any TLS work is done for it, and reads PROXY headers from trusted
   * balancers. A refused socket never reaches the TLS server, so it costs no handshake.
   */
  readonly #front: net.Server;
  /** Balancers allowed to send PROXY headers; null when PROXY protocol is off. */
  readonly #trusted: BlockList | null;
  /** Open connections per client address group (addressGroup), for `maxConnectionsPerIp`. */
  readonly #perIp = new Map<string, number>();
  readonly #perIpRefusals: RefusalLog;
  /** [P-1.8] Partial frames' memory, across every connection. */
  readonly #budget: BufferBudget;
  readonly #budgetRefusals: RefusalLog;
  /** Connections that named their client in a PROXY header, from the header to the socket's close. */
  readonly #proxied = new Map<string, Proxied>();
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
    this.#perIpRefusals = new RefusalLog(this.#log, 'connections refused: too many open connections from one address');
    this.#budget = new BufferBudget(opts.maxBufferedBytes);
    this.#budgetRefusals = new RefusalLog(this.#log, 'connections closed: no room to buffer their partial frames (maxBufferedBytes)');
    this.#server = tls.createServer(
      {
        key: opts.key,
        cert: opts.cert,
        ...TLS_POLICY,
        // [P-1.9] A client that connects and never finishes its handshake is cut (see tlsClientError).
        handshakeTimeout: opts.handshakeTimeoutMs,
        // Let a client half-close after its last request and still read the answers.
        allowHalfOpen: true,
      },
      (socket) => this.#accept(socket, opts),
    );
    const trusted = opts.trustedProxies ?? null;
    this.#trusted = trusted;
    this.#front = net.createServer({ allowHalfOpen: true }, (raw) => this.#acceptFront(raw, trusted, opts));
    // The server that accepts TCP connections owns the connection limit and the socket tracking.
    this.#front.maxConnections = opts.maxConnections;
    this.#front.on('connection', (raw: Socket) => {
      this.#sockets.add(raw);
      raw.once('close', () => this.#sockets.delete(raw));
    });
    const dropped = new RefusalLog(this.#log, 'connections refused: too many open connections');
    this.#front.on('drop', (data) => {
      this.#metrics.connectionRefused('max_connections');
      dropped.refused({ ip: normalizeIp(data?.remoteAddress), max: opts.maxConnections });
    });
    this.#server.on('tlsClientError', (err, socket) => {
      this.#metrics.connectionRefused('tls_handshake');
      const proxied = this.#trusted ? this.#proxied.get(tupleKey(socket)) : undefined;
      const peer = proxied ? { ip: proxied.ip, via: proxied.via } : { ip: normalizeIp(socket.remoteAddress) };
      this.#log.info({ err: err.message, ...peer }, 'TLS handshake failed');
      // Node reports a handshake timeout here but leaves the socket open (checked on Node 20): a
      // peer that connected and sent nothing would keep its connection slot for good.
      socket.destroy();
    });
  }

  /**
   * PROXY protocol on: every TCP connection arrives here. Only a trusted peer's stream is read for
   * a header; any other peer goes straight to TLS with its own address, so a header from it is just
   * a failed handshake and no one but a configured balancer can name a client address.
   */
  #acceptFront(raw: Socket, trusted: BlockList | null, opts: ListenerOptions): void {
    const via = normalizeIp(raw.remoteAddress);
    if (!trusted || !isTrustedPeer(trusted, via)) {
      // A balancer carries many clients: its connections are counted per client, once its header is read.
      if (this.#admit(via, raw, opts)) this.#server.emit('connection', raw);
      return;
    }
    const parser = new ProxyHeaderParser();
    const stop = (): void => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('error', onEnd);
      raw.off('close', stop);
    };
    // There is no TLS yet to send an error on: log, count and close.
    const refuse = (error: ProxyHeaderError): void => {
      stop();
      this.#metrics.connectionRefused('proxy_header');
      this.#log.info({ ip: via, reason: error.code, err: error.message }, 'PROXY header refused; closing connection');
      raw.destroy();
    };
    // A deadline, not a socket idle timeout, which a peer could keep resetting by trickling bytes.
    // The TLS handshake timeout starts once the header is in.
    const timer = setTimeout(
      () => refuse({ code: 'timeout', message: `no complete PROXY header within ${opts.handshakeTimeoutMs} ms` }),
      opts.handshakeTimeoutMs,
    );
    const onEnd = (): void => {
      if (parser.receivedBytes === 0) {
        // Connect and close without a byte: what a balancer's TCP health check does. Not an error.
        stop();
        this.#log.debug({ ip: via }, 'connection closed before a PROXY header');
        raw.destroy();
        return;
      }
      const result = parser.end();
      if (result.status === 'error') refuse(result.error);
    };
    const onData = (chunk: Buffer): void => {
      const result = parser.push(chunk);
      if (result.status === 'incomplete') return;
      if (result.status === 'error') return refuse(result.error);
      stop();
      if (this.#closing) {
        raw.destroy();
        return;
      }
      // Stop reading here and put back what followed the header: the TLS socket wrapping `raw`
      // takes the bytes already buffered in it before reading the wire.
      raw.pause();
      if (result.rest.length > 0) raw.unshift(result.rest);
      const header = result.header;
      if (header.family === 'unknown') {
        // LOCAL, UNKNOWN, UNSPEC: the balancer speaking for itself (health checks); its address stays.
        this.#log.debug({ ip: via, version: header.version, command: header.command }, 'PROXY header names no client; using the peer address');
      } else {
        const key = tupleKey(raw);
        const entry: Proxied = { ip: normalizeIp(header.source.address), via };
        // [P-1.7] The client's cap, like a direct client's, before any TLS work is done for it.
        if (!this.#admit(entry.ip, raw, opts)) return;
        this.#proxied.set(key, entry);
        // Only this socket's own entry: after a reset, the same 4-tuple may already be a new connection.
        raw.once('close', () => {
          if (this.#proxied.get(key) === entry) this.#proxied.delete(key);
        });
      }
      this.#server.emit('connection', raw);
    };
    raw.on('data', onData);
    raw.on('end', onEnd);
    raw.on('error', onEnd);
    raw.on('close', stop);
  }

  /**
   * The per-address cap: one address may hold at most `maxConnectionsPerIp` connections, so a single
   * client cannot take every slot of `maxConnections`. Over the cap the socket is closed at once
   * (logged at most every 10 s, counted); under it, the count drops again when the socket closes.
   */
  #admit(ip: string, socket: Socket, opts: ListenerOptions): boolean {
    // IPv6 by network: one subscriber's /64 is one client, not 2^64 of them.
    const group = addressGroup(ip, opts.ipv6Prefix);
    const open = this.#perIp.get(group) ?? 0;
    if (open >= opts.maxConnectionsPerIp) {
      this.#metrics.connectionRefused('max_connections_per_ip');
      this.#perIpRefusals.refused(group === ip ? { ip, max: opts.maxConnectionsPerIp } : { ip, group, max: opts.maxConnectionsPerIp });
      socket.destroy();
      return false;
    }
    this.#perIp.set(group, open + 1);
    socket.once('close', () => {
      const left = (this.#perIp.get(group) ?? 1) - 1;
      if (left <= 0) this.#perIp.delete(group);
      else this.#perIp.set(group, left);
    });
    return true;
  }

  #accept(socket: tls.TLSSocket, opts: ListenerOptions): void {
    // [P-3.4] The address tokens are bound to: the TCP peer's, or the client a trusted balancer named.
    const proxied = this.#trusted ? this.#proxied.get(tupleKey(socket)) : undefined;
    const ip = proxied ? proxied.ip : normalizeIp(socket.remoteAddress);
    socket.setNoDelay(true);
    // What a connection holds while idle is kept small (19,000 of them fit in 500 MB: README
    // "Benchmarks"): its child logger is made only when it first logs, and the callbacks and
    // settings it shares with every other connection are made once, in #connectionDefaults.
    const conn = new Connection(socket, {
      ...this.#connectionDefaults(opts),
      ip,
      logBindings: proxied ? { conn: this.#nextId++, ip, via: proxied.via } : { conn: this.#nextId++, ip },
    });
    if (opts.idleTimeoutMs > 0) {
      socket.setTimeout(opts.idleTimeoutMs, () => {
        conn.log.info('idle timeout; closing connection');
        this.#metrics.connectionRefused('idle_timeout');
        socket.destroy();
      });
    }
    this.#connections.add(conn);
    this.#metrics.connectionOpened();
    // A handshake that completes after shutdown began: answer nothing new, close promptly.
    if (this.#closing) conn.shutdown();
    if (this.#log.isLevelEnabled('debug')) conn.log.debug({ protocol: socket.getProtocol(), cipher: socket.getCipher()?.name }, 'connection open');
    void conn.closed.then(() => {
      this.#connections.delete(conn);
      this.#metrics.connectionClosed();
      if (this.#log.isLevelEnabled('debug')) conn.log.debug('connection closed');
    });
  }

  #defaults: Omit<ConnectionOptions, 'ip'> | undefined;

  /** The Connection options every connection of this listener shares (made once). */
  #connectionDefaults(opts: ListenerOptions): Omit<ConnectionOptions, 'ip'> {
    return (this.#defaults ??= {
      dispatch: opts.dispatch,
      log: opts.log,
      maxFrameBytes: opts.maxFrameBytes,
      maxInflight: opts.maxInflight,
      ...(opts.aroundRead && { aroundRead: opts.aroundRead }),
      onFramingError: () => this.#metrics.connectionRefused('framing_error'),
      frameTimeoutMs: opts.frameTimeoutMs,
      onFrameTimeout: () => this.#metrics.connectionRefused('frame_timeout'),
      budget: this.#budget,
      onOverBudget: (refusal, ip) => {
        this.#metrics.connectionRefused('buffer_budget');
        this.#budgetRefusals.refused({ ip, frameBytes: refusal.bytes, bufferedBytes: this.#budget.used, maxBufferedBytes: this.#budget.capacity });
      },
    });
  }

  /** Bytes held for partial frames now, and the most ever held at once [P-1.8]. */
  get buffered(): { readonly used: number; readonly peak: number; readonly capacity: number } {
    return { used: this.#budget.used, peak: this.#budget.peak, capacity: this.#budget.capacity };
  }

  /** New connections get this certificate; open ones keep theirs (no connection is dropped). */
  setCertificate(key: Buffer, cert: Buffer): void {
    // A new context would get new session-ticket keys; keep the old ones so clients still resume.
    const tickets = this.#server.getTicketKeys();
    this.#server.setSecureContext({ key, cert, ...TLS_POLICY });
    this.#server.setTicketKeys(tickets);
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    const server = this.#front;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting, lets every connection answer what it already received, and waits for them to
   * close; after `graceMs` whatever is left is destroyed.
   */
  async close(graceMs = 5000): Promise<void> {
    this.#closing = true;
    const stopped = new Promise<void>((resolve) => this.#front.close(() => resolve()));
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
    // allowHalfOpen lingers until the handshake timeout) or its PROXY header: nothing is owed to it.
    for (const raw of this.#sockets) raw.destroy();
    await stopped;
  }
}
