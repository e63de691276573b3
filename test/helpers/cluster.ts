import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Test } from 'tap';
import { measurePropagation, type Propagation } from '../../src/bench/propagation.js';
import { HellwallClient } from '../../src/client/client.js';
import { pgOrSkip, type PgCluster } from './postgres.js';
import { CLI, env, startServer, type RunningServer } from './processes.js';
import { passcodeFrom, SMTP_PASS, SMTP_USER, SmtpSink, type ReceivedMail } from './smtp-sink.js';

export type { Propagation };

/** An operator the cluster tests log in as. */
export interface ClusterUser {
  readonly email: string;
  readonly phone: string;
  readonly password: string;
  readonly role: 'user' | 'admin';
}

export const ADMIN: ClusterUser = { email: 'root@example.com', phone: '+1 555 0100', password: 'admin correct horse battery', role: 'admin' };
export const ALICE: ClusterUser = { email: 'alice@example.com', phone: '+1 555 0101', password: 'alice correct horse battery', role: 'user' };
export const BOB: ClusterUser = { email: 'bob@example.com', phone: '+1 555 0102', password: 'bob correct horse battery', role: 'user' };
export const CAROL: ClusterUser = { email: 'carol@example.com', phone: '+1 555 0103', password: 'carol correct horse battery', role: 'user' };

/** The i-th of any number of further operators (role user). */
export const operator = (i: number): ClusterUser => ({
  email: `operator${i}@example.com`,
  phone: `+1 555 ${String(1000 + i).padStart(4, '0')}`,
  password: `operator ${i} correct horse battery`,
  role: 'user',
});

/** A distinct MAC per index, so one operator can hold many sessions. */
export const macOf = (i: number): string => `02:00:5e:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

/** The MAC of the admin session startCluster makes. */
export const ADMIN_MAC = '02:00:5e:00:ad:01';

export type NodeName = 'A' | 'B';

/** A session as a client holds it: the token and what it is bound to [P-3.2]. */
export interface Held {
  readonly token: string;
  readonly mac: string;
  /** The client address it logged in from (127.0.0.1 unless the test chose another). */
  readonly localAddress: string;
}

/**
 * Two real Hellwall processes (`dist/main.js`) on one throwaway PostgreSQL, sharing one data
 * directory (key ring and development certificate), mailing through a real SMTP sink.
 */
export interface Cluster {
  readonly pg: PgCluster;
  readonly dataDir: string;
  readonly smtp: SmtpSink;
  /** The environment both nodes run with (the test's extra variables included). */
  readonly env: NodeJS.ProcessEnv;
  /** A session of the first admin in `users` (made on node A), when there is one. */
  readonly admin: Held | undefined;
  /** The node's running process (the latest one when it was restarted). */
  node(name: NodeName): RunningServer;
  /** Starts the node (again) with the cluster's environment; resolves once it listens. */
  start(name: NodeName): Promise<RunningServer>;
  /** Sends `signal` to the node and waits for it to exit. */
  kill(name: NodeName, signal?: NodeJS.Signals): Promise<number | null>;
  /** A client of the node, from `localAddress` (127.0.0.1 by default); closed at teardown. */
  connect(name: NodeName, localAddress?: string): Promise<HellwallClient>;
  /**
   * Logs `user` in through the node (passcode by real mail); answers the session as held. One
   * operator's logins are queued, so callers may start several at once.
   */
  login(name: NodeName, user: ClusterUser, mac: string, localAddress?: string): Promise<Held>;
  /** Runs `fn` on a direct connection to the cluster's database (for assertions on rows). */
  db<T>(fn: (c: pg.Client) => Promise<T>): Promise<T>;
}

export interface ClusterOptions {
  /** Extra HELLWALL_* variables for both nodes. */
  readonly env?: Record<string, string>;
  /**
   * Operators to add: the first admin with the CLI (on the shared database, while B starts), the
   * others by that admin over the wire.
   */
  readonly users?: readonly ClusterUser[];
  /** Prefix of the database name, for the server log. */
  readonly name?: string;
}

/**
 * For tap: starts PostgreSQL (or skips, see pgOrSkip), an SMTP sink, node A (which creates the
 * schema, the key ring and the development certificate), the operators, then node B. Everything
 * stops at the test's teardown.
 */
export async function startCluster(t: Test, opts: ClusterOptions = {}): Promise<Cluster | undefined> {
  const pgc = await pgOrSkip(t, { name: opts.name ?? 'cluster' });
  if (!pgc) return undefined;
  const smtp = await SmtpSink.start();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-cluster-'));
  const clients: HellwallClient[] = [];
  const nodes = new Map<NodeName, RunningServer>();
  // Registered before anything starts, so a failed start-up leaves no process behind either. The
  // database itself goes in pgOrSkip's teardown.
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await Promise.all(
      [...nodes.values()].map(async (n) => {
        if (n.child.exitCode === null && n.child.signalCode === null) {
          n.child.kill('SIGKILL');
          await n.exited;
        }
      }),
    );
    await smtp.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const e = env(dataDir, {
    HELLWALL_PORT: '0',
    HELLWALL_STORE_URL: pgc.url,
    // A database that is down must answer E_BUSY soon, not after the 5 s default.
    HELLWALL_STORE_CONNECT_TIMEOUT_MS: '1000',
    HELLWALL_SMTP_HOST: '127.0.0.1',
    HELLWALL_SMTP_PORT: String(smtp.port),
    HELLWALL_SMTP_SECURITY: 'starttls',
    HELLWALL_SMTP_USER: SMTP_USER,
    HELLWALL_SMTP_PASS: SMTP_PASS,
    HELLWALL_SMTP_TLS_VERIFY: 'false',
    // Tests log the same operators in many times within the hour and hold many sessions each.
    HELLWALL_LIMIT_PASSCODES_PER_HOUR: '100000',
    HELLWALL_SESSIONS_MAX_PER_USER: '1000',
    HELLWALL_HOUSEKEEPING_INTERVAL: '0',
    // Parallel logins of one operator from one address hold many attempts outstanding at once.
    HELLWALL_LIMIT_FREE_FAILURES: '1000',
    // The new-sign-in alert names the MAC too: the passcode mail must be the only one that does.
    HELLWALL_ALERT_NEW_DEVICE: 'false',
    ...opts.env,
  });

  const start = async (name: NodeName): Promise<RunningServer> => {
    const server = await startServer(e);
    nodes.set(name, server);
    return server;
  };
  const node = (name: NodeName): RunningServer => {
    const n = nodes.get(name);
    if (!n) throw new Error(`node ${name} was never started`);
    return n;
  };

  // A first: it migrates the database and creates the key ring and certificate B then loads.
  await start('A');
  // Each CLI run is a process start (seconds on a busy machine): only the first admin is added
  // that way; the others through the wire, as that admin, once both nodes are up.
  const users = opts.users ?? [];
  const firstAdmin = users.find((u) => u.role === 'admin');
  const viaCli = firstAdmin ? [firstAdmin] : users;
  await Promise.all([
    start('B'),
    ...viaCli.map(async (u) => {
      const r = await cliAsync(['user', 'add', '--email', u.email, '--phone', u.phone, '--role', u.role], { ...e, HELLWALL_PASSWORD: u.password });
      if (r.code !== 0) throw new Error(`user add ${u.email} failed (${r.code}): ${r.stderr}`);
    }),
  ]);
  const ca = readFileSync(path.join(dataDir, 'dev-cert.pem'));

  const connect = async (name: NodeName, localAddress = '127.0.0.1'): Promise<HellwallClient> => {
    const client = await HellwallClient.connect({ host: '127.0.0.1', port: node(name).port, ca, localAddress });
    clients.push(client);
    return client;
  };

  // A newer passcode.request replaces the operator's pending passcode [P-4.2]: one operator's
  // logins run one after another (different operators' in parallel).
  const loginQueue = new Map<string, Promise<unknown>>();
  const loginNow = async (name: NodeName, user: ClusterUser, mac: string, localAddress: string): Promise<Held> => {
    const client = await connect(name, localAddress);
    try {
      const since = smtp.messages.length;
      const requested = await client.requestPasscode({ email: user.email, password: user.password, mac });
      if (requested.status !== 'ok') throw new Error(`passcode.request on ${name}: ${JSON.stringify(requested)}`);
      const passcode = passcodeFrom(await waitForMail(smtp, user.email, mac, since));
      const res = await client.login({ email: user.email, phone: user.phone, password: user.password, passcode, mac });
      if (res.status !== 'ok') throw new Error(`passcode.auth on ${name}: ${JSON.stringify(res)}`);
      return { token: res.token, mac, localAddress };
    } finally {
      await client.close();
    }
  };
  const login = (name: NodeName, user: ClusterUser, mac: string, localAddress = '127.0.0.1'): Promise<Held> => {
    const before = loginQueue.get(user.email) ?? Promise.resolve();
    const mine = before.catch(() => undefined).then(() => loginNow(name, user, mac, localAddress));
    loginQueue.set(user.email, mine);
    return mine;
  };

  const db = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: pgc.url });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };

  let admin: Held | undefined;
  if (firstAdmin) {
    admin = await login('A', firstAdmin, ADMIN_MAC);
    const client = await connect('A');
    for (const u of users) {
      if (u === firstAdmin) continue;
      // Each add hashes a password: with a test's short token TTL the admin token may expire
      // meanwhile, and admin commands take no renewal [P-3.6]; a check renews it. On a loaded
      // machine it can also expire between that check and the add (which then changed nothing,
      // E_UNAUTHENTICATED): renew and send the add again, a few times at most.
      let res;
      for (let attempt = 0; ; attempt++) {
        const renewed = await check(client, admin);
        if (renewed.status === 'renew') admin = { ...admin, token: renewed.token };
        res = await client.admin('admin.user.add', admin, { email: u.email, phone: u.phone, role: u.role, password: u.password });
        if (res.status === 'ok' || res.error !== 'E_UNAUTHENTICATED' || attempt === 2) break;
      }
      if (res.status !== 'ok') throw new Error(`admin.user.add ${u.email}: ${JSON.stringify(res)}`);
    }
    await client.close();
  }

  return {
    pg: pgc,
    admin,
    dataDir,
    smtp,
    env: e,
    node,
    start,
    async kill(name, signal = 'SIGKILL') {
      const n = node(name);
      if (n.child.exitCode !== null || n.child.signalCode !== null) return n.child.exitCode;
      n.child.kill(signal);
      return n.exited;
    },
    connect,
    login,
    db,
  };
}

/** The passcode mail to `to` for `mac` that arrived after `since` messages. */
async function waitForMail(smtp: SmtpSink, to: string, mac: string, since: number): Promise<ReceivedMail> {
  const deadline = Date.now() + 10_000;
  // Quoted-printable may wrap the line naming the MAC (a soft break is `=` at the end of a line).
  const names = (m: ReceivedMail): boolean => m.raw.replace(/=\r?\n/g, '').includes(mac);
  for (;;) {
    const found = smtp.messages.slice(since).find((m) => m.to.includes(to) && names(m));
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no passcode mail to ${to} for ${mac} within 10 s`);
    await smtp.waitFor(to, smtp.messages.length, Math.max(1, deadline - Date.now())).catch(() => undefined);
  }
}

/** The CLI without blocking the event loop, so several commands (and a server start) overlap. */
function cliAsync(args: string[], e: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: e, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A token check of a held session through `client` (which must come from the held address). */
export function check(client: HellwallClient, held: Held, request = 'inventory.read'): ReturnType<HellwallClient['check']> {
  return client.check({ token: held.token, mac: held.mac, request });
}

/**
 * Checks `held` through `observer` (a client of the other node, from the held address) back to
 * back while `revoke` runs, until the observer answers `unauthorized` (src/bench/propagation.ts).
 * `revoke` resolves when the revoking node acknowledged.
 */
export function propagation(observer: HellwallClient, held: Held, revoke: () => Promise<void>, timeoutMs = 2000): Promise<Propagation> {
  return measurePropagation(() => check(observer, held), revoke, timeoutMs);
}

/** Nearest-rank percentile. */
export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
