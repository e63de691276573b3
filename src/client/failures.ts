// Every way of not getting an answer from the server, in one line a person can act on. Node's own
// errors name a syscall or an OpenSSL routine; an operator wants to know what is wrong and what to
// try. The CLI prints `message` and exits with its "could not reach or trust the server" code.

/** Why no answer came. */
export type FailureReason =
  /** Nothing listens on host:port. */
  | 'refused'
  /** The port is not one (0, 70000, not a number). */
  | 'bad-port'
  /** The name does not resolve. */
  | 'unknown-host'
  /** No route to the host or its network. */
  | 'unreachable'
  /** Something answered that does not speak TLS (plain TCP, HTTP). */
  | 'not-tls'
  /** The server's certificate is not signed by the CA we trust. */
  | 'untrusted'
  /** The CA file cannot be used (missing, unreadable, not PEM). */
  | 'bad-ca'
  /** The certificate is trusted but names another host. */
  | 'name-mismatch'
  | 'expired'
  | 'not-yet-valid'
  /** No connection, handshake or answer in time. */
  | 'timeout'
  /** The connection ended before the answer. */
  | 'closed'
  /** The server broke the framing or sent something that is not a response. */
  | 'protocol'
  /** Another TLS failure (a handshake alert, a version the server refuses). */
  | 'tls';

/** The server could not be reached or trusted; `message` says what and what to do. */
export class ConnectFailure extends Error {
  override name = 'ConnectFailure';
  constructor(
    readonly reason: FailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What a connection attempt was, for the message. */
export interface Target {
  readonly host: string;
  readonly port: number;
  /** The name checked in the certificate, when not `host`. */
  readonly servername?: string;
  /** Where the trusted CA came from, to name it in the advice. */
  readonly caFile?: string;
  /**
   * How far it got: no TCP connection yet, TCP but no TLS handshake (plain TCP on the other end
   * times out here), or a request sent and not answered.
   */
  readonly stage?: 'tcp' | 'handshake' | 'request';
  readonly timeoutMs?: number;
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_CHAIN_TOO_LONG',
]);

// What OpenSSL says when the first bytes back are not a TLS record: an HTTP reply, a banner.
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_RECORD_LAYER_FAILURE',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_UNEXPECTED_EOF_WHILE_READING',
]);

/** The ConnectFailure for an error met while connecting to (or talking with) `target`. */
export function explainConnectError(err: unknown, target: Target): ConnectFailure {
  if (err instanceof ConnectFailure) return err;
  const e = err as NodeJS.ErrnoException;
  const code = String(e?.code ?? '');
  const where = `${target.host}:${target.port}`;
  const name = target.servername ?? target.host;
  const ca = target.caFile ? ` (${target.caFile})` : '';
  const fail = (reason: FailureReason, message: string): ConnectFailure => new ConnectFailure(reason, message, { cause: err });
  if (code === 'ECONNREFUSED') {
    return fail('refused', `nothing listens on ${where}: is the server running? (start it with \`npm start\`; --host/--port or HELLWALL_PORT to reach another)`);
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL') {
    return fail('unknown-host', `unknown host ${JSON.stringify(target.host)}${code === 'EAI_AGAIN' ? ' (the name server did not answer)' : ''}: check --host`);
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EADDRNOTAVAIL') {
    return fail('unreachable', `no route to ${where}: check --host and the network`);
  }
  if (code === 'ETIMEDOUT' || code === 'ERR_CLIENT_TIMEOUT') return timeout(target, err);
  if (NOT_TLS.has(code)) {
    return fail('not-tls', `${where} does not speak TLS (an HTTP or other plain-TCP service?): check --port, or HELLWALL_PORT for the hellwall server`);
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return fail(
      'closed',
      target.stage !== 'request'
        ? `${where} reset the connection during the TLS handshake: is it a hellwall server? (check --port)`
        : `${where} closed the connection before answering: retry, and see the server's log if it keeps happening`,
    );
  }
  if (UNTRUSTED.has(code)) {
    return fail('untrusted', `the certificate of ${where} is not signed by the CA we trust${ca}: pass --ca with the server's certificate or its CA (data/dev-cert.pem on the server for the development certificate)`);
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return fail('name-mismatch', `the certificate of ${where} is not for ${JSON.stringify(name)}: connect with the name it was issued for (--host), or say which name to check with --servername`);
  }
  if (code === 'CERT_HAS_EXPIRED') {
    return fail('expired', `the certificate of ${where} has expired: the server needs a new one (a development certificate is made again when data/dev-cert.pem and dev-key.pem are deleted)`);
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return fail('not-yet-valid', `the certificate of ${where} is not valid yet: check this machine's clock and the server's`);
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || /^[A-Z_]+_CERT|CERT_/.test(code)) {
    return fail('tls', `TLS with ${where} failed (${oneLine(e.message)}): check that it is a hellwall server and that --ca is its CA`);
  }
  return fail('closed', `could not talk to ${where}: ${oneLine(e?.message ?? String(err))}`);
}

/** No TCP connection, no TLS handshake, or no answer within the time allowed. */
export function timeout(target: Target, cause?: unknown): ConnectFailure {
  const where = `${target.host}:${target.port}`;
  const secs = target.timeoutMs === undefined ? '' : ` within ${target.timeoutMs / 1000} s`;
  const message =
    target.stage === 'tcp'
      ? `no connection to ${where}${secs}: check --host, --port and any firewall in between`
      : target.stage === 'handshake'
        ? `${where} accepted the connection but did not start TLS${secs}: is it a hellwall server? (check --port)`
        : `${where} did not answer${secs}: the server may be overloaded; retry, or wait longer with --timeout`;
  return new ConnectFailure('timeout', message, { cause });
}

/** OpenSSL messages span lines and carry source paths; the first clause is what helps. */
function oneLine(text: string): string {
  return text.split('\n')[0]!.replace(/^[0-9A-F]+:error:[0-9A-F]+:/, '').slice(0, 200);
}
