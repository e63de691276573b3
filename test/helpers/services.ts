import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log.js';
import { AccountService } from '../../src/services/account-service.js';
import type { ServiceErrorKind } from '../../src/errors.js';
import { AdminService, type Actor } from '../../src/services/admin-service.js';
import { Alerts } from '../../src/services/alerts.js';
import { DeviceService } from '../../src/services/device-service.js';
import { KeyRing } from '../../src/keys/key-ring.js';
import { PasscodeService, type LoginResult } from '../../src/services/passcode-service.js';
import { PasswordHasher } from '../../src/primitives/passwords.js';
import { CompiledPolicy, PolicyLoader } from '../../src/services/policy.js';
import { SessionCache } from '../../src/services/session-cache.js';
import { SessionService, type Caller } from '../../src/services/session-service.js';
import { Throttle } from '../../src/services/throttle.js';
import { TokenService } from '../../src/services/token-service.js';
import { masterToken, newBaseToken } from '../../src/primitives/tokens.js';
import { loadConfig, type Config, type ConfigInput } from '../../src/config.js';
import type { Logger, RandomBytes } from '../../src/deps.js';
import { createLogger } from '../../src/log.js';
import { MailQueue, type MailMessage, type Mailer } from '../../src/mail/mailer.js';
import { NO_METRICS, type Metrics } from '../../src/ops/metrics.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { AuditQuery, AuditRecord, Store, UserRecord } from '../../src/store/store.js';
import { LogSink } from './log-sink.js';
import { mulberry32 } from './test-utils.js';

// The services built directly, as app.ts wires them but with no TLS, no app and no SMTP: a fake
// clock, a seeded random source, SQLite in memory (or in a temp file), a recording mailer. Each
// test builds its own kit and tears it down.

/** The instant every kit starts at; the clock moves only when a test advances `clock.now`. */
export const T0 = Date.UTC(2026, 10, 21, 12, 0, 0);
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;

// Light scrypt: hashing is not what these tests are about.
export const TEST_SCRYPT = { ln: 10, r: 8, p: 1 } as const;

export const ALICE = { email: 'alice@example.com', phone: '+15550100', password: 'correct horse battery staple', role: 'user' } as const;
export const BOB = { email: 'bob@example.com', phone: '+15550101', password: 'tr0ubadour and a long tail', role: 'user' } as const;
export const ROOT = { email: 'root@example.com', phone: '+15550102', password: 'admin passphrase of length', role: 'admin' } as const;
export const MAC = '00:1a:2b:3c:4d:5e';
export const IP = '192.0.2.10';

export type Person = { readonly email: string; readonly phone: string; readonly password: string; readonly role: string };

/** Random bytes from a seeded PRNG: the same seed gives the same tokens, salts and passcodes. */
export function seededRandom(seed: number): RandomBytes {
  const next = mulberry32(seed);
  return (size) => {
    const out = Buffer.alloc(size);
    for (let i = 0; i < size; i++) out[i] = Math.floor(next() * 256);
    return out;
  };
}

/** A Mailer that keeps every message; `fail` makes the next sends throw (each call takes one). */
export class RecordingMailer implements Mailer {
  readonly sent: MailMessage[] = [];
  /** Send attempts, successful or not, with when each was made (performance.now(): retry delays are real time). */
  readonly attempts: Array<{ to: string; at: number }> = [];
  fail = 0;
  closed = false;

  async send(message: MailMessage): Promise<void> {
    this.attempts.push({ to: message.to, at: performance.now() });
    if (this.fail > 0) {
      this.fail--;
      throw new Error('421 try again later');
    }
    this.sent.push(message);
  }

  close(): void {
    this.closed = true;
  }

  /** The passcode of the last passcode mail sent to `to` (alerts may have come after it). */
  passcodeFor(to: string): string {
    const mail = this.sent.filter((m) => m.to === to && /passcode is: /.test(m.text)).at(-1);
    const code = mail && /passcode is: ([A-Z0-9]+)/.exec(mail.text)?.[1];
    if (!code) throw new Error(`no passcode mail to ${to}`);
    return code;
  }
}

/** Metrics that count what they are told; everything else as NO_METRICS. */
export function countingMetrics(): Metrics & { readonly counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  const add = (key: string, n = 1): void => {
    counts[key] = (counts[key] ?? 0) + n;
  };
  return {
    ...NO_METRICS,
    counts,
    renewal: () => add('renewal'),
    reuseDetected: () => add('reuseDetected'),
    mail: (outcome) => add(`mail.${outcome}`),
    audit: (outcome, n) => add(`audit.${outcome}`, n),
  };
}

/** A Store whose method calls are counted by name (property reads such as `coherent` are not). */
export function countingStore(store: Store): { store: Store; calls: Record<string, number>; reset(): void; total(): number } {
  const calls: Record<string, number> = {};
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => {
        calls[prop] = (calls[prop] ?? 0) + 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    store: proxy,
    calls,
    reset: () => {
      for (const k of Object.keys(calls)) delete calls[k];
    },
    total: () => Object.values(calls).reduce((a, b) => a + b, 0),
  };
}

/** A Store that reports `coherent` as `state.coherent` says (a lost change feed, on demand). */
export function incoherentStore(store: Store, state: { coherent: boolean }): Store {
  return new Proxy(store, {
    get: (target, prop, receiver) => (prop === 'coherent' ? state.coherent : Reflect.get(target, prop, receiver)),
  });
}

export interface KitOptions {
  /** Overrides of the default configuration (loadConfig's `overrides`). */
  readonly config?: ConfigInput;
  /** A SQLite file instead of `:memory:` (for a second connection on the same database). */
  readonly file?: string;
  /** Wraps the store every service is given (counting, failing, incoherent Proxies). */
  readonly wrap?: (store: Store) => Store;
  readonly seed?: number;
  readonly users?: readonly Person[];
  /** Mail delivery retries (MailQueue): attempts and the first retry's delay. */
  readonly mail?: { attempts?: number; retryDelayMs?: number };
  readonly logLevel?: string;
}

export interface Kit {
  readonly config: Config;
  /** The fake clock: set or advance `clock.now` by hand. */
  readonly clock: { now: number };
  readonly random: RandomBytes;
  /** The store as opened, without any wrapper (for setup and assertions). */
  readonly raw: Store;
  /** The store the services were given (`wrap`ped when asked). */
  readonly store: Store;
  readonly dataDir: string;
  readonly file: string;
  readonly keys: KeyRing;
  readonly hasher: PasswordHasher;
  readonly mailer: RecordingMailer;
  readonly mail: MailQueue;
  readonly cache: SessionCache;
  readonly throttle: Throttle;
  readonly audit: AuditLog;
  readonly metrics: ReturnType<typeof countingMetrics>;
  /** The policy in force; replace `current` to change it. Starts as the built-in default. */
  readonly policy: { current: CompiledPolicy };
  readonly tokens: TokenService;
  readonly passcodes: PasscodeService;
  readonly sessions: SessionService;
  readonly admin: AdminService;
  readonly account: AccountService;
  readonly alerts: Alerts;
  readonly devices: DeviceService;
  readonly logs: LogSink;
  readonly log: Logger;
  readonly users: Record<string, UserRecord>;
  /** Opens a session for the user directly in the store, as a login would; answers its token. */
  openSession(email: string, opts?: { mac?: string; ip?: string; device?: string }): Promise<{ token: string; id: number; caller: Caller }>;
  /** The whole login: passcode.request, the mailed passcode, passcode.auth. */
  login(who: Person, opts?: { mac?: string; ip?: string; device?: string }): Promise<LoginResult & { caller: Caller; id: number }>;
  /** The audit trail as stored (after a group commit of what is queued), newest first. */
  auditRows(query?: Partial<AuditQuery>): Promise<AuditRecord[]>;
  /** The wire actor of an admin session (AdminService.authorize). */
  actor(caller: Caller, command?: Parameters<AdminService['authorize']>[1]): Promise<Actor>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Builds every service on fresh state; everything is closed at the test's end. */
export async function buildKit(t: Teardown, opts: KitOptions = {}): Promise<Kit> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-svc-'));
  const file = opts.file ?? ':memory:';
  // The new-device alert mails after every first login from a MAC or address: tests that count
  // mail would count it too. Its own tests set `alerts` themselves.
  const config = loadConfig({}, { alerts: { newDevice: false }, ...opts.config, dataDir });
  const clock = { now: T0 };
  const now = (): number => clock.now;
  const random = seededRandom(opts.seed ?? 1);
  const logs = new LogSink();
  const log = createLogger(opts.logLevel ?? 'debug', logs);
  const raw = openSqliteStore(file);
  const store = opts.wrap ? opts.wrap(raw) : raw;
  const keys = KeyRing.open(dataDir, random, log);
  const hasher = new PasswordHasher({ concurrency: 2, queueMax: 64, random, params: TEST_SCRYPT });
  const mailer = new RecordingMailer();
  const metrics = countingMetrics();
  const mail = new MailQueue(mailer, log, { metrics, attempts: opts.mail?.attempts ?? 3, retryDelayMs: opts.mail?.retryDelayMs ?? 5 });
  const throttle = new Throttle(config.limits, now, store, (email, until, ip) => alerts.accountLocked(email, until, ip));
  const audit = new AuditLog({ store, clock: now, log, metrics });
  const alerts = new Alerts({ config, mail, audit, clock: now, log, store });
  const cache = new SessionCache(store);
  const policy = { current: new PolicyLoader({ file: '', defaultDeny: true }).load() };
  const tokens = new TokenService({ config, store, sessions: cache, keys, clock: now, random, metrics, throttle, audit, policy, alerts });
  const devices = new DeviceService({ config, store, sessions: cache, clock: now, audit, alerts, mail, tokens });
  const passcodes = new PasscodeService({ config, store, hasher, keys, clock: now, random, mail, throttle, audit, devices });
  const sessions = new SessionService({ config, store, sessions: cache, clock: now, tokens, audit });
  const admin = new AdminService({ config, store, sessions: cache, hasher, clock: now, audit, tokens, roles: () => policy.current.roles, alerts });
  const account = new AccountService({ store, hasher, clock: now, tokens, throttle, mail, audit, alerts });

  t.teardown(async () => {
    await mail.drain(1000);
    await audit.close();
    cache.close();
    await raw.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const users: Record<string, UserRecord> = {};
  for (const u of opts.users ?? [ALICE, BOB, ROOT]) {
    users[u.email] = await raw.createUser({ email: u.email, phone: u.phone, role: u.role, passwordHash: await hasher.hash(u.password), createdAt: clock.now });
  }

  const kit: Kit = {
    config,
    clock,
    random,
    raw,
    store,
    dataDir,
    file,
    keys,
    hasher,
    mailer,
    mail,
    cache,
    throttle,
    audit,
    metrics,
    policy,
    tokens,
    passcodes,
    sessions,
    admin,
    account,
    alerts,
    devices,
    logs,
    log,
    users,

    async openSession(email, o = {}) {
      const user = await raw.findUserByEmail(email);
      if (!user) throw new Error(`no user ${email}`);
      const mac = o.mac ?? MAC;
      const ip = o.ip ?? IP;
      const token = newBaseToken(random);
      const key = keys.current;
      const at = clock.now;
      const absoluteExpiresAt = at + config.tokens.absoluteSeconds * SECOND;
      const id = await raw.createSession({
        userId: user.id,
        master: masterToken(key.master, token, mac, ip),
        keyId: key.id,
        mac,
        ip,
        createdAt: at,
        expiresAt: Math.min(at + config.tokens.ttlSeconds * SECOND, absoluteExpiresAt),
        absoluteExpiresAt,
        device: o.device ?? null,
      });
      return { token, id, caller: { token, mac, seenIp: ip } };
    },

    async login(who, o = {}) {
      const mac = o.mac ?? MAC;
      const ip = o.ip ?? IP;
      await passcodes.request({ email: who.email, password: who.password, mac, reportedIp: null, seenIp: ip }, log);
      await mail.drain();
      const passcode = mailer.passcodeFor(who.email);
      const result = await passcodes.authenticate(
        { email: who.email, phone: who.phone, password: who.password, passcode, mac, seenIp: ip, ...(o.device !== undefined && { device: o.device }) },
        log,
      );
      const caller = { token: result.token, mac, seenIp: ip };
      const session = await raw.findSessionByMaster(masterToken(keys.current.master, result.token, mac, ip));
      return { ...result, caller, id: session!.id };
    },

    async auditRows(query = {}) {
      await audit.flush();
      return raw.queryAudit({ limit: 1000, ...query });
    },

    actor(caller, command = 'admin.user.list') {
      return admin.authorize(caller, command, log);
    },
  };
  return kit;
}

/** A policy for tests, compiled as a policy file would be (default deny). */
export function policyOf(doc: ConstructorParameters<typeof CompiledPolicy>[0]): CompiledPolicy {
  return new CompiledPolicy(doc, { defaultDeny: true, source: 'test' });
}

/** What `t.rejects` matches a refusal by: `name` and, for a typed service error, the fields it must have. */
export type Refusal = { readonly name: string | RegExp; readonly [field: string]: unknown };

/** A ServiceError (or one of its subclasses) of this kind, with these fields. */
export function refusal(kind: ServiceErrorKind, fields: Record<string, unknown> = {}): Refusal {
  return { name: /^(ServiceError|UserInputError|RateLimited|ReauthRequired)$/, kind, ...fields };
}
