import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { FrameDecoder, parseFrame } from '../codec/frame-decoder.js';
import { ConnectFailure, explainConnectError, timeout, type Target } from './failures.js';
import { encodeFrame } from '../codec/frame-encoder.js';
import { COMMAND_CODES, type CommandName, type Commands } from '../protocol/messages.gen.js';
import type {
  PasswordChangeResponse,
  ErrorResponse,
  HelloResponse,
  PasscodeAuthResponse,
  PasscodeRequestResponse,
  SessionListResponse,
  SessionLogoutAllResponse,
  SessionLogoutResponse,
  SessionRevokeResponse,
  TokenCheckResponse,
} from '../protocol/messages.gen.js';

export interface ClientOptions {
  readonly host: string;
  readonly port: number;
  /** PEM of the CA (or the self-signed dev certificate) to trust. */
  readonly ca?: string | Buffer;
  /** Name to verify in the server certificate; defaults to `host`. */
  readonly servername?: string;
  /** Source address to connect from (tests use 127.0.0.2 to appear as another client). */
  readonly localAddress?: string;
  /**
   * An already connected stream to run TLS over instead of opening one to host:port (`host` still
   * names the server to verify); tests write a PROXY protocol header on it first.
   */
  readonly socket?: Duplex;
  readonly maxFrameBytes?: number;
  /** The TCP connection and the TLS handshake must be done within this (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * Each request must be answered within this, or the connection is dropped and every pending
   * request fails with a ConnectFailure `timeout` (default: wait as long as it takes).
   */
  readonly requestTimeoutMs?: number;
  /** Where the CA came from, named in a failure's advice. */
  readonly caFile?: string;
  readonly session?: Buffer;
  /**
   * Checks each response before it is delivered; a non-null result rejects that request with an
   * error carrying the text. The test harness uses it to hold every response to the contract.
   */
  readonly inspect?: (response: AnyResponse) => string | null;
}

export type AnyResponse = Record<string, unknown> & { status: string; id?: string; code?: number };
type Result<T> = T | ErrorResponse;

/** An admin command's fields besides the envelope and the caller's token and MAC. */
type AdminArgs<Req> = Omit<Req, 'code' | 'id' | 'token' | 'mac'>;

/** The admin commands [P-4.12] by name. */
export type AdminCommand = Extract<CommandName, `admin.${string}`>;
type AdminCommands = { [K in AdminCommand]: [AdminArgs<Commands[K][0]>, Commands[K][1]] };

/** protocol/index.json's codes for the admin commands (generated from the index, never by hand). */
export const ADMIN_CODES: Readonly<Record<AdminCommand, number>> = Object.freeze(
  Object.fromEntries(Object.entries(COMMAND_CODES).filter(([name]) => name.startsWith('admin.'))) as Record<AdminCommand, number>,
);

interface Pending {
  resolve(res: AnyResponse): void;
  reject(err: Error): void;
}

/**
 * A Hellwall client over one persistent TLS connection. Requests may be pipelined; the server
 * answers in order [P-2.4], so responses are matched to requests first-in first-out.
 */
export class HellwallClient {
  readonly #socket: tls.TLSSocket;
  readonly #decoder: FrameDecoder;
  readonly #pending: Pending[] = [];
  #nextId = 1;
  #closedError: Error | null = null;
  readonly #target: Target;
  readonly #requestTimeoutMs: number | undefined;
  readonly closed: Promise<void>;

  private constructor(socket: tls.TLSSocket, target: Target, maxFrameBytes: number, inspect?: ClientOptions['inspect'], requestTimeoutMs?: number) {
    this.#socket = socket;
    this.#target = target;
    this.#decoder = new FrameDecoder(maxFrameBytes);
    if (requestTimeoutMs !== undefined) {
      // Idle while a request waits means no answer: the socket timer restarts on every byte, and
      // is only armed while something is pending (a held connection may idle as long as it likes).
      socket.on('timeout', () => {
        if (this.#pending.length > 0) socket.destroy(timeout({ ...target, stage: 'request', timeoutMs: requestTimeoutMs }));
      });
    }
    this.#requestTimeoutMs = requestTimeoutMs;
    socket.on('data', (chunk: Buffer) => {
      const err = this.#decoder.push(chunk, (payload) => {
        const parsed = parseFrame(payload);
        const waiter = this.#pending.shift();
        if (this.#pending.length === 0) socket.setTimeout(0);
        if (!waiter) return;
        if (!parsed.ok) return waiter.reject(new ConnectFailure('protocol', `${target.host}:${target.port} sent a bad frame (${parsed.error.message}): is it a hellwall server?`));
        const response = parsed.value as AnyResponse;
        const violation = inspect?.(response);
        if (violation) waiter.reject(new Error(`response violates the protocol: ${violation}: ${JSON.stringify(response)}`));
        else waiter.resolve(response);
      });
      if (err) socket.destroy(new ConnectFailure('protocol', `${target.host}:${target.port} broke the framing (${err.message}): is it a hellwall server?`));
    });
    socket.on('error', (err) => {
      this.#closedError ??= err;
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        const err = this.#closedError
          ? explainConnectError(this.#closedError, { ...target, stage: 'request' })
          : new ConnectFailure('closed', `${target.host}:${target.port} closed the connection before answering: retry, and see the server's log if it keeps happening`);
        for (const waiter of this.#pending.splice(0)) waiter.reject(err);
        resolve();
      }),
    );
  }

  /**
   * Connects and completes the TLS handshake. Every failure rejects with a ConnectFailure that says
   * what went wrong and what to do (its `cause` is Node's error).
   */
  static connect(opts: ClientOptions): Promise<HellwallClient> {
    const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    const target: Target = {
      host: opts.host,
      port: opts.port,
      ...(opts.servername !== undefined && { servername: opts.servername }),
      ...(opts.caFile !== undefined && { caFile: opts.caFile }),
      timeoutMs: connectTimeoutMs,
    };
    if (opts.socket === undefined && !(Number.isInteger(opts.port) && opts.port >= 1 && opts.port <= 65535)) {
      return Promise.reject(new ConnectFailure('bad-port', `port ${JSON.stringify(opts.port)} is not a TCP port (1 to 65535): check --port or HELLWALL_PORT`));
    }
    return new Promise((resolve, reject) => {
      // localAddress is a net.connect option that tls.connect passes through; its types omit it.
      const options: tls.ConnectionOptions & { localAddress?: string } = {
        host: opts.host,
        port: opts.port,
        ca: opts.ca,
        servername: opts.servername ?? (isIpLiteral(opts.host) ? undefined : opts.host),
        localAddress: opts.localAddress,
        socket: opts.socket,
        minVersion: 'TLSv1.2',
        session: opts.session,
        timeout: connectTimeoutMs,
        // With an IP literal there is no SNI; check the certificate's IP SAN against it instead.
        checkServerIdentity: (host, cert) => tls.checkServerIdentity(opts.servername ?? opts.host ?? host, cert),
      };
      let stage: 'tcp' | 'handshake' = opts.socket ? 'handshake' : 'tcp';
      const socket = tls.connect(options);
      socket.setNoDelay(true);
      socket.once('connect', () => {
        stage = 'handshake';
      });
      const onError = (err: Error): void => reject(explainConnectError(err, { ...target, stage }));
      const onTimeout = (): void => {
        socket.destroy();
        reject(timeout({ ...target, stage }));
      };
      socket.once('error', onError);
      socket.once('timeout', onTimeout);
      socket.once('secureConnect', () => {
        socket.off('error', onError);
        socket.off('timeout', onTimeout);
        socket.setTimeout(0);
        resolve(new HellwallClient(socket, target, opts.maxFrameBytes ?? 16 * 1024 * 1024, opts.inspect, opts.requestTimeoutMs));
      });
    });
  }

  get socket(): tls.TLSSocket {
    return this.#socket;
  }

  /** Sends one request object; gives it an `id` unless it has one. */
  send<T = AnyResponse>(message: Record<string, unknown>): Promise<T> {
    const withId = message.id === undefined ? { ...message, id: String(this.#nextId++) } : message;
    return this.sendRaw(encodeFrame(withId)) as Promise<T>;
  }

  /** Writes raw bytes and waits for the next response (for tests that send malformed frames). */
  sendRaw(bytes: Buffer, expectResponse = true): Promise<AnyResponse> {
    const promise = expectResponse
      ? new Promise<AnyResponse>((resolve, reject) => this.#pending.push({ resolve, reject }))
      : Promise.resolve({ status: 'none' } as AnyResponse);
    if (this.#socket.destroyed) {
      const waiter = this.#pending.pop();
      const t = this.#target;
      waiter?.reject(
        this.#closedError
          ? explainConnectError(this.#closedError, { ...t, stage: 'request' })
          : new ConnectFailure('closed', `the connection to ${t.host}:${t.port} is closed: run the command again`),
      );
    } else {
      if (expectResponse && this.#requestTimeoutMs !== undefined && this.#pending.length === 1) this.#socket.setTimeout(this.#requestTimeoutMs);
      this.#socket.write(bytes);
    }
    return promise;
  }

  hello(): Promise<Result<HelloResponse>> {
    return this.send({ code: COMMAND_CODES.hello });
  }

  requestPasscode(args: { email: string; password: string; mac: string; ip?: string }): Promise<Result<PasscodeRequestResponse>> {
    return this.send({ code: COMMAND_CODES['passcode.request'], ...args });
  }

  login(args: { email: string; phone: string; password: string; passcode: string; mac: string; device?: string }): Promise<Result<PasscodeAuthResponse>> {
    return this.send({ code: COMMAND_CODES['passcode.auth'], ...args });
  }

  check(args: { token: string; mac: string; request: string; data?: unknown }): Promise<Result<TokenCheckResponse>> {
    return this.send({ code: COMMAND_CODES['token.check'], ...args });
  }

  /** session.logout: ends this token's session. */
  logout(args: { token: string; mac: string }): Promise<Result<SessionLogoutResponse>> {
    return this.send({ code: COMMAND_CODES['session.logout'], ...args });
  }

  /** session.logout_all: ends every session of this token's operator. */
  logoutAll(args: { token: string; mac: string }): Promise<Result<SessionLogoutAllResponse>> {
    return this.send({ code: COMMAND_CODES['session.logout_all'], ...args });
  }

  /** session.list: this token's operator's active sessions. */
  listSessions(args: { token: string; mac: string }): Promise<Result<SessionListResponse>> {
    return this.send({ code: COMMAND_CODES['session.list'], ...args });
  }

  /** session.revoke: ends one active session of this token's operator (by id from session.list). */
  revokeSession(args: { token: string; mac: string; sessionId: number }): Promise<Result<SessionRevokeResponse>> {
    return this.send({ code: COMMAND_CODES['session.revoke'], ...args });
  }

  /** password.change [P-4.13]: this token's operator's own password; their other sessions end. */
  changePassword(args: { token: string; mac: string; password: string; newPassword: string }): Promise<Result<PasswordChangeResponse>> {
    return this.send({ code: COMMAND_CODES['password.change'], ...args });
  }

  /**
   * Any command by name (codes come from protocol/index.json): the request's fields besides `code`
   * and `id`. The typed methods above are this with names; a new command needs no new method.
   */
  command<K extends CommandName>(name: K, fields: Omit<Commands[K][0], 'code' | 'id'>): Promise<Result<Commands[K][1]>> {
    return this.send({ ...fields, code: COMMAND_CODES[name] });
  }

  /** An admin command [P-4.12], with the token and MAC of an operator with role `admin`. */
  admin<K extends AdminCommand>(command: K, auth: { token: string; mac: string }, args: AdminCommands[K][0]): Promise<Result<AdminCommands[K][1]>> {
    return this.send({ ...args, code: ADMIN_CODES[command], token: auth.token, mac: auth.mac });
  }

  /** Ends the connection after the server has answered everything sent so far. */
  async close(): Promise<void> {
    this.#socket.end();
    await this.closed;
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
