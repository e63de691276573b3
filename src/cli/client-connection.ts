import os from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { AuthenticatedClient, type Credentials } from '../client/authenticated.js';
import { HellwallClient } from '../client/client.js';
import { localMac } from '../client/device.js';
import { ConnectFailure } from '../client/failures.js';
import { defaultTokenFile, readTokenFile, removeTokenFile, TokenFileError, writeTokenFile, type StoredToken } from '../client/token-file.js';
import { readCa } from '../client/trust.js';
import { loadConfig } from '../config.js';
import type { ErrorResponse, TokenCheckRenew } from '../protocol/messages.gen.js';
import { DEV_CERT_FILE } from '../tls/tls-files.js';
import { text, type Ctx, type OptionDefs, type Parsed } from './command.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { isoTime, json, printable, table } from './output.js';

// What every `hellwall client …` command shares: where the server is and how to trust it (from the
// same configuration and data directory as the server, so the README's flow needs no options), the
// stored token, and the exit codes that tell "could not reach or trust the server" (3) from "the
// server said no" (1).

/** Could not reach or trust the server: nothing was sent, or no answer came. */
export const EXIT_UNREACHABLE = 3;

export const CONNECTION_OPTIONS: OptionDefs = {
  host: { type: 'string', value: 'H', help: 'the server (default: HELLWALL_HOST, as the server binds; 127.0.0.1 for a wildcard)' },
  port: { type: 'string', value: 'N', help: 'its port (default: HELLWALL_PORT, as the server listens)' },
  ca: {
    type: 'string',
    value: 'FILE',
    file: true,
    help: "the server's certificate or its CA, PEM (default: the dev certificate in the data directory, or the system CAs and HELLWALL_TLS_CERT)",
  },
  servername: { type: 'string', value: 'NAME', help: "the name to verify in the server's certificate, when it is not --host" },
  timeout: { type: 'string', value: 'S', help: 'seconds to wait for the connection and for each answer (default 10)' },
  'data-dir': { type: 'string', value: 'D', file: true, help: 'the server\'s data directory, for its configuration and dev certificate (default: $HELLWALL_DATA_DIR, else ./data)' },
};

export const TOKEN_OPTIONS: OptionDefs = {
  token: { type: 'string', value: 'T', help: 'the token (default: $HELLWALL_TOKEN, else the token file); $HELLWALL_TOKEN keeps it out of ps' },
  mac: { type: 'string', value: 'M', help: "the MAC the token is bound to (default: the token file's, else this machine's)" },
  'token-file': { type: 'string', value: 'FILE', file: true, help: 'where login keeps the token (default: $HELLWALL_TOKEN_FILE, else ~/.hellwall-token)' },
};

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly ca: Buffer;
  readonly caFile?: string;
  readonly servername?: string;
  readonly timeoutMs: number;
}

/**
 * Where the server is, from the options, else the configuration the server itself reads
 * (HELLWALL_CONFIG, HELLWALL_*): its port, its bind address (a wildcard means this machine) and its
 * certificate (the dev one in its data directory, or the configured one with the system CAs).
 */
export function endpoint(ctx: Ctx, args: Parsed): Endpoint {
  // main() has already put --data-dir into ctx.env as HELLWALL_DATA_DIR.
  const config = loadConfig(ctx.env);
  const portText = text(args, 'port');
  let port = config.port;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw new UsageError(`--port must be a TCP port (1 to 65535), not ${JSON.stringify(portText)}`);
  } else if (port === 0) {
    throw new UsageError('the configured port is 0 (the server picks one when it starts): pass --port, the port in its "hellwall listening" log line');
  }
  const timeoutText = text(args, 'timeout');
  const timeoutMs = timeoutText === undefined ? 10_000 : Number(timeoutText) * 1000;
  if (!(timeoutMs > 0 && timeoutMs <= 3_600_000)) throw new UsageError(`--timeout must be a number of seconds (up to 3600), not ${JSON.stringify(timeoutText)}`);
  const host = text(args, 'host') ?? (['0.0.0.0', '::', ''].includes(config.host) ? '127.0.0.1' : config.host);
  const servername = text(args, 'servername');
  const common = { host, port, timeoutMs, ...(servername !== undefined && { servername }) };
  const caOption = text(args, 'ca');
  if (caOption !== undefined) return { ...common, ca: readCa(caOption), caFile: caOption };
  if (config.tls.certFile) {
    // A certificate from a public CA verifies with the system's roots; a self-signed one, with itself.
    return { ...common, ca: Buffer.concat([Buffer.from(rootCertificates.join('\n') + '\n'), readCa(config.tls.certFile)]), caFile: config.tls.certFile };
  }
  const devCert = path.join(config.dataDir, DEV_CERT_FILE);
  return { ...common, ca: readCa(devCert), caFile: devCert };
}

/** Connects, runs `fn`, closes. Anything that kept the answer from coming is exit 3, one line. */
export async function withClient<T>(ctx: Ctx, args: Parsed, fn: (client: HellwallClient) => Promise<T>): Promise<T> {
  try {
    const e = endpoint(ctx, args);
    const client = await HellwallClient.connect({
      host: e.host,
      port: e.port,
      ca: e.ca,
      connectTimeoutMs: e.timeoutMs,
      requestTimeoutMs: e.timeoutMs,
      ...(e.caFile !== undefined && { caFile: e.caFile }),
      ...(e.servername !== undefined && { servername: e.servername }),
    });
    try {
      return await fn(client);
    } finally {
      client.destroy();
    }
  } catch (err) {
    if (err instanceof ConnectFailure) {
      const failure = new CliError(err.message, EXIT_UNREACHABLE);
      failure.cause = err;
      throw failure;
    }
    throw err;
  }
}

/** The token file this command uses. */
export function tokenFile(ctx: Ctx, args: Parsed): string {
  return text(args, 'token-file') ?? defaultTokenFile(ctx.env, ctx.env.HOME || os.homedir());
}

/** The stored token, with a warning when its file had to be tightened. */
export function storedToken(ctx: Ctx, file: string): StoredToken | null {
  const read = tokenFileStep(() => readTokenFile(file));
  if (read?.loosened) ctx.warn(`${file} was readable by others: now 0600 (it holds your token; consider logging in again)`);
  return read?.stored ?? null;
}

/**
 * The caller's token and MAC: --token, else $HELLWALL_TOKEN, else the token file. Only the stored
 * token follows renewals by itself; the MAC defaults to the file's, else this machine's.
 */
export function credentials(ctx: Ctx, args: Parsed): Credentials & { file: string } {
  const file = tokenFile(ctx, args);
  const given = text(args, 'token') ?? (ctx.env.HELLWALL_TOKEN || undefined);
  const mac = text(args, 'mac');
  if (given !== undefined) {
    const fallback = mac ?? localMac(os.networkInterfaces());
    if (!fallback) throw new UsageError('--mac is required (this machine has no network interface with a MAC)');
    return { token: given, mac: fallback, source: text(args, 'token') !== undefined ? 'option' : 'env', file };
  }
  const stored = storedToken(ctx, file);
  if (!stored) throw new UsageError(`not logged in (no token in ${file}): run \`hellwall client login\`, or set HELLWALL_TOKEN`);
  return { token: stored.token, mac: mac ?? stored.mac, source: 'file', file };
}

/**
 * An AuthenticatedClient whose renewals replace the token file before anything else happens; a
 * renewal of a token given by hand is said on stderr (the answer printed carries the new token).
 */
export function authenticated(ctx: Ctx, client: HellwallClient, creds: Credentials & { file: string }): AuthenticatedClient {
  return new AuthenticatedClient(client, creds, (renewed: TokenCheckRenew, mac: string) => {
    if (creds.source === 'file') {
      const before = tokenFileStep(() => readTokenFile(creds.file))?.stored;
      saveToken(creds.file, { ...before, ...storedFrom(renewed), mac });
    } else {
      ctx.note('the token was renewed: use the new one from now on (the old one stops working after a short grace)');
    }
  });
}

/** A token file that cannot be read or written is exit 1 with what to do, not a crash. */
function tokenFileStep<T>(step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof TokenFileError) throw new CliError(err.message, EXIT.refused);
    throw err;
  }
}

/** Replaces the token file (atomically, 0600). */
export function saveToken(file: string, stored: StoredToken): void {
  tokenFileStep(() => writeTokenFile(file, stored));
}

/** Removes the token file; false when there was none. */
export function forgetToken(file: string): boolean {
  return tokenFileStep(() => removeTokenFile(file));
}

/** What the token file keeps from a login or renewal answer. */
export function storedFrom(res: { token: string; user: { email: string; role: string }; expiresAt: number; renewableUntil: number }): Omit<StoredToken, 'mac'> {
  return { token: res.token, email: res.user.email, role: res.user.role, expiresAt: res.expiresAt, renewableUntil: res.renewableUntil };
}

/** One visible line from the terminal (a passcode is single-use and short-lived: no need to hide it). */
export async function readLine(ctx: Ctx, prompt: string): Promise<string> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: ctx.io.stdin, output: ctx.io.stderr as NodeJS.WritableStream, terminal: false });
  try {
    ctx.io.stderr.write(prompt);
    const line = await rl.question('');
    return line.trim();
  } finally {
    rl.close();
  }
}

/** A refusal from the server: `hellwall: <message> (<code>)` on stderr, exit 1. */
export function refused(res: ErrorResponse | { status: string }): CliError {
  if (res.status === 'error') {
    const e = res as ErrorResponse;
    const retry = e.retryAfterSeconds === undefined ? '' : `; retry in ${e.retryAfterSeconds} s`;
    return new CliError(`the server refused: ${printable(e.message)} (${e.error}${retry})`, EXIT.refused);
  }
  return new CliError(`the server answered ${printable(res.status)}`, EXIT.refused);
}

/** session.list as a table (or JSON): the caller's own sessions; never a token. */
export function sessionListText(
  list: ReadonlyArray<{ id: number; mac: string; ip: string; device?: string; createdAt: number; lastSeenAt: number; current: boolean }>,
  asJson: boolean,
): string {
  if (asJson) return json(list);
  return table(
    ['', 'id', 'mac', 'ip', 'device', 'created', 'last seen'],
    list.map((s) => [s.current ? '*' : '', s.id, s.mac, s.ip, s.device, isoTime(s.createdAt), isoTime(s.lastSeenAt)]),
  );
}

