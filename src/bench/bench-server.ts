// Child-process entry for the benchmark: `bench-server.js <mode> <dataDir>` (modes: ServerMode), started with
// an IPC channel. It serves until that channel closes, so it cannot outlive the orchestrator.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { buildApp, createApp } from '../app.js';
import type { CompiledPolicy } from '../services/policy.js';
import { HellwallClient } from '../client/client.js';
import { loadConfig, type Config } from '../config.js';
import type { Logger } from '../deps.js';
import { createLogger } from '../log.js';
import type { MailMessage, Mailer } from '../mail/mailer.js';
import { listenerLimits, TlsListener } from '../server/tls-server.js';
import { loadTlsMaterial } from '../tls/tls-files.js';
import { AllowAllPolicy, realisticPolicy } from './bench-policies.js';
import { startProfile, type ProfileSummary } from './cpu-profile.js';

/**
 * `hellwall-nolimits`: the same service with the rate limits off, to measure what they cost.
 * `hellwall-allowall`: the policy step of every check does nothing (the floor the policy is measured
 * against); `hellwall-policy50`: a policy file of 50 rules with globs (bench-policies.ts).
 * `hellwall-pg`: the service on the PostgreSQL database named by the third argument, which it adds
 * the bench user to and logs in on; `hellwall-pg-peer`: a second node on that database and data
 * directory (same key ring), started after it, which only serves.
 */
export type ServerMode = 'hellwall' | 'hellwall-nolimits' | 'hellwall-allowall' | 'hellwall-policy50' | 'hellwall-pg' | 'hellwall-pg-peer' | 'echo';
const MODES: readonly ServerMode[] = ['hellwall', 'hellwall-nolimits', 'hellwall-allowall', 'hellwall-policy50', 'hellwall-pg', 'hellwall-pg-peer', 'echo'];

/** Sent once the listener is up; for hellwall, with a token obtained over the wire from 127.0.0.1. */
export interface ServerReady {
  readonly type: 'ready';
  readonly port: number;
  readonly certFile: string;
  readonly token?: string;
  readonly mac?: string;
}

/** A session as its client holds it; bound to 127.0.0.1, where the orchestrator checks from. */
export interface BenchSession {
  readonly token: string;
  readonly mac: string;
}

/** The parent asks a `hellwall-pg` server for `count` more sessions (for the propagation figures). */
export interface SessionsRequest {
  readonly type: 'sessions';
  readonly count: number;
}

/** The answer to a SessionsRequest. */
export interface SessionsReply {
  readonly type: 'sessions';
  readonly sessions?: readonly BenchSession[];
  readonly error?: string;
}

/** Answer to the parent's 'cpu' message: CPU time used so far and when, both on this process's clock. */
export interface CpuSample {
  readonly type: 'cpu';
  readonly cpuMs: number;
  readonly atMs: number;
}

interface Running {
  readonly ready: ServerReady;
  close(): Promise<void>;
  /** More sessions of the bench user, logged in through the listener (hellwall-pg only). */
  sessions?(count: number): Promise<BenchSession[]>;
}

const USER = { email: 'bench@example.com', phone: '+15550100', role: 'user', password: 'bench password 0123456789' };
const MAC = '02:00:5e:00:be:01';

/** The real service, logged in once through its own listener so the token is bound to 127.0.0.1. */
async function startHellwall(config: Config, log: Logger, allowAll: boolean): Promise<Running> {
  let deliver!: (message: MailMessage) => void;
  const delivered = new Promise<MailMessage>((resolve) => (deliver = resolve));
  const mailer: Mailer = { send: async (message) => deliver(message), close: () => {} };
  const app = buildApp({ config, log, mailer });
  // The token service reads `app.policy.current` on every check, as after a SIGHUP reload.
  if (allowAll) (app.policy as { current: CompiledPolicy }).current = new AllowAllPolicy();
  await app.addUser(USER);
  const { address, tls } = await app.listen();
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: address.port, ca: tls.cert });
  try {
    const requested = await client.requestPasscode({ email: USER.email, password: USER.password, mac: MAC });
    if (requested.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(requested)}`);
    const mail = await withTimeout(delivered, 10_000, 'no passcode mail');
    const passcode = /passcode is: (\w+)/.exec(mail.text)?.[1];
    if (!passcode) throw new Error('no passcode in the mail');
    const login = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac: MAC });
    if (login.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(login)}`);
    const check = await client.check({ token: login.token, mac: MAC, request: 'bench.read', data: {} });
    if (check.status !== 'authorized') throw new Error(`token check failed: ${JSON.stringify(check)}`);
    return {
      ready: { type: 'ready', port: address.port, certFile: tls.certFile, token: login.token, mac: MAC },
      close: () => app.close(1000),
    };
  } finally {
    await client.close();
  }
}

/** Mail the service sends, kept in order for the logins waiting on it. */
class Inbox {
  readonly #mail: MailMessage[] = [];
  readonly #waiting: Array<(message: MailMessage) => void> = [];
  readonly mailer: Mailer = {
    send: async (message) => {
      const waiter = this.#waiting.shift();
      if (waiter) waiter(message);
      else this.#mail.push(message);
    },
    close: () => {},
  };

  next(): Promise<MailMessage> {
    const mail = this.#mail.shift();
    return mail ? Promise.resolve(mail) : withTimeout(new Promise((resolve) => this.#waiting.push(resolve)), 10_000, 'no passcode mail');
  }
}

// Logins only set the figures up, and the propagation figures need a couple of hundred of them: the
// test parameters (src/app.ts `scrypt`), not the production cost. Token checks never hash.
const SETUP_SCRYPT = { ln: 10, r: 8, p: 1 };

/** One login of the bench user from `mac` through the listener, as a client does it. */
async function login(client: HellwallClient, inbox: Inbox, mac: string): Promise<BenchSession> {
  const requested = await client.requestPasscode({ email: USER.email, password: USER.password, mac });
  if (requested.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(requested)}`);
  const passcode = /passcode is: (\w+)/.exec((await inbox.next()).text)?.[1];
  if (!passcode) throw new Error('no passcode in the mail');
  const res = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac });
  if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
  return { token: res.token, mac };
}

/** A MAC per session number, apart from MAC. */
function sessionMac(n: number): string {
  const hex = (b: number): string => b.toString(16).padStart(2, '0');
  return `02:00:5e:01:${hex((n >> 8) & 0xff)}:${hex(n & 0xff)}`;
}

/**
 * A node on PostgreSQL. The first (`hellwall-pg`) adds the bench user and logs in once, like
 * startHellwall; the peer only serves: the token the first node issued checks on it too.
 */
async function startHellwallPg(config: Config, log: Logger, first: boolean): Promise<Running> {
  const inbox = new Inbox();
  const app = await createApp({ config, log, mailer: inbox.mailer, scrypt: SETUP_SCRYPT });
  if (first) await app.addUser(USER);
  const { address, tls } = await app.listen();
  const ready: ServerReady = { type: 'ready', port: address.port, certFile: tls.certFile };
  if (!first) return { ready, close: () => app.close(1000) };
  const connect = (): Promise<HellwallClient> => HellwallClient.connect({ host: '127.0.0.1', port: address.port, ca: tls.cert });
  const client = await connect();
  let session: BenchSession;
  try {
    session = await login(client, inbox, MAC);
    const check = await client.check({ token: session.token, mac: MAC, request: 'bench.read', data: {} });
    if (check.status !== 'authorized') throw new Error(`token check failed: ${JSON.stringify(check)}`);
  } catch (err) {
    await app.close(0);
    throw err;
  } finally {
    await client.close();
  }
  let made = 0;
  return {
    ready: { ...ready, token: session.token, mac: MAC },
    close: () => app.close(1000),
    async sessions(count) {
      const c = await connect();
      try {
        const out: BenchSession[] = [];
        // One operator's logins one after another: a newer passcode request replaces the pending one.
        for (let i = 0; i < count; i++, made++) out.push(await login(c, inbox, sessionMac(made)));
        return out;
      } finally {
        await c.close();
      }
    },
  };
}

/**
 * The ceiling: the same listener (key, certificate, TLS options, Connection) with a dispatch that
 * does no work, so the gap to hellwall is what the service itself costs.
 */
async function startEcho(config: Config, log: Logger): Promise<Running> {
  const tls = await loadTlsMaterial(config, log);
  const listener = new TlsListener({
    key: tls.key,
    cert: tls.cert,
    dispatch: (message) => ({ id: message.id, code: message.code, status: 'ok' }),
    log,
    ...listenerLimits(config),
  });
  const address = await listener.listen(config.port, config.host);
  return { ready: { type: 'ready', port: address.port, certFile: tls.certFile }, close: () => listener.close(1000) };
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main(): Promise<void> {
  const [mode, dataDir, storeUrl] = process.argv.slice(2);
  const send = process.send?.bind(process);
  const onPostgres = mode === 'hellwall-pg' || mode === 'hellwall-pg-peer';
  if (!MODES.includes(mode as ServerMode) || !dataDir || !send || onPostgres !== Boolean(storeUrl)) {
    throw new Error(`usage: bench-server.js <${MODES.join('|')}> <dataDir> [<postgres:// URL>, hellwall-pg* only], started with an IPC channel`);
  }
  let policyFile = '';
  if (mode === 'hellwall-policy50') {
    policyFile = path.join(dataDir, 'policy.json');
    writeFileSync(policyFile, JSON.stringify(realisticPolicy(), null, 2));
  }
  // An explicit empty env: HELLWALL_* variables of the shell must not change what is measured.
  const config = loadConfig({}, {
      dataDir,
      port: 0,
      host: '127.0.0.1',
      logLevel: 'error',
      tokens: { ttlSeconds: 86400 },
      ops: { port: 0 },
      console: { enabled: false },
      // The propagation figures log in from many MACs: each first login's new-device alert would be
      // read as the next passcode mail.
      alerts: { newDevice: false },
      limits: { enabled: mode !== 'hellwall-nolimits' },
      // Every load-client connection comes from 127.0.0.1.
      maxConnectionsPerIp: 100_000,
      policy: { file: policyFile },
      // `bench --hash-concurrency N`: the login storm against another bound on parallel hashes.
      ...(process.env.BENCH_HASH_CONCURRENCY && { passwords: { hashConcurrency: Number(process.env.BENCH_HASH_CONCURRENCY) } }),
      // On PostgreSQL the propagation figures log the bench user in a couple of hundred times from
      // 127.0.0.1, and each logout ends with a refused check: the limits stay on (a token check
      // costs the same whatever their numbers), with room for that. They run after the load runs.
      ...(onPostgres && {
        store: { url: storeUrl },
        sessions: { maxPerUser: 1000 },
        limits: { enabled: true, ipPasscodeRequestsPerMinute: 100_000, ipLoginsPerMinute: 100_000, ipFailedChecksPerMinute: 100_000, passcodesPerHour: 100_000 },
      }),
    }, undefined);
  // Errors only, and on stderr: stdout belongs to the orchestrator's report, and the dev-certificate
  // warning is expected here.
  const log = createLogger(config.logLevel, pino.destination(2));
  const server =
    mode === 'echo'
      ? await startEcho(config, log)
      : onPostgres
        ? await startHellwallPg(config, log, mode === 'hellwall-pg')
        : await startHellwall(config, log, mode === 'hellwall-allowall');
  let stopProfile: Promise<() => Promise<ProfileSummary>> | undefined;
  process.on('message', (message: 'cpu' | 'profile-start' | 'profile-stop' | SessionsRequest) => {
    if (message === 'cpu') {
      const { user, system } = process.cpuUsage();
      send({ type: 'cpu', cpuMs: (user + system) / 1000, atMs: performance.now() } satisfies CpuSample);
    } else if (message === 'profile-start') {
      stopProfile = startProfile();
      stopProfile.catch(() => {});
    } else if (message === 'profile-stop') {
      const stopping = stopProfile;
      stopProfile = undefined;
      if (!stopping) throw new Error('profile-stop without profile-start');
      // The bench does not wait for the summary before asking for the next CPU sample, so it comes
      // back in the order asked; a failure is fatal (the orchestrator sees the exit).
      void stopping.then((stop) => stop()).then((summary) => send(summary));
    } else if (message.type === 'sessions') {
      const made = server.sessions ? server.sessions(message.count) : Promise.reject(new Error(`${mode} makes no sessions`));
      made.then(
        (sessions) => send({ type: 'sessions', sessions } satisfies SessionsReply),
        (err: unknown) => send({ type: 'sessions', error: err instanceof Error ? err.message : String(err) } satisfies SessionsReply),
      );
    }
  });
  process.once('disconnect', () => {
    void server.close().finally(() => process.exit(0));
  });
  send(server.ready);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench-server: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
