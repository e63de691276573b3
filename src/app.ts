import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { AuditLog } from './audit/audit-log.js';
import { AccountService } from './services/account-service.js';
import { AdminService } from './services/admin-service.js';
import { KeyRing, NODE_HEARTBEAT_MS } from './keys/key-ring.js';
import { PasscodeService } from './services/passcode-service.js';
import { PasswordHasher, type ScryptParams } from './primitives/passwords.js';
import { PolicyLoader, type CompiledPolicy } from './services/policy.js';
import { Throttle } from './services/throttle.js';
import { SessionService } from './services/session-service.js';
import { TokenService } from './services/token-service.js';
import { addUser } from './services/users.js';
import type { Config } from './config.js';
import type { Clock, Logger, RandomBytes } from './deps.js';
import { parseTrustedProxies } from './net/trusted-proxies.js';
import type { Services } from './handlers/context.js';
import { X509Certificate } from 'node:crypto';
import { Housekeeper } from './ops/housekeeper.js';
import { OpsServer } from './ops/http.js';
import { createPrometheusMetrics, type PrometheusMetrics } from './ops/prometheus.js';
import { createOutboxMailer, createSmtpMailer, MailQueue, type Mailer } from './mail/mailer.js';
import { loadProtocol, type Protocol } from './protocol/registry.js';
import { createDispatcher, type DispatchFn } from './server/dispatcher.js';
import { listenerLimits, TlsListener } from './server/tls-server.js';
import { DATABASE_FILE, openStore } from './store/open.js';
import { openSqliteStore } from './store/sqlite-store.js';
import type { Store } from './store/store.js';
import { SessionCache } from './services/session-cache.js';
import { liveBounds } from './services/session-rules.js';
import { loadTlsMaterial, type TlsMaterial } from './tls/tls-files.js';

export { DATABASE_FILE };

export interface AppDeps {
  readonly config: Config;
  readonly log: Logger;
  readonly clock?: Clock;
  readonly random?: RandomBytes;
  /** Replaces the configured transport (tests record mail with this where SMTP is not the point). */
  readonly mailer?: Mailer;
  /** Lighter scrypt parameters for tests that hash many passwords; production uses the default. */
  readonly scrypt?: ScryptParams;
  readonly mailRetryDelayMs?: number;
  /**
   * The store, already open (createApp opens the configured one). Absent: the SQLite file in the
   * data directory, opened here (tests and the CLI's embedded default).
   */
  readonly store?: Store;
}

export interface App {
  readonly config: Config;
  readonly log: Logger;
  readonly store: Store;
  readonly protocol: Protocol;
  readonly services: Services;
  readonly dispatch: DispatchFn;
  readonly hasher: PasswordHasher;
  readonly mail: MailQueue;
  readonly metrics: PrometheusMetrics;
  /** The server key ring (`server.key`, `server.key.N`): current key first, older live ones after. */
  readonly keys: KeyRing;
  /** Deletes expired rows: periodically once listening; `runOnce()` for the CLI and tests. */
  readonly housekeeper: Housekeeper;
  /** The authorization policy in force [P-4.7]; `current` is replaced by a successful reload. */
  readonly policy: { readonly current: CompiledPolicy };
  /** The audit trail's writer: `flush()` writes queued events now (tests, the CLI). */
  readonly audit: AuditLog;
  addUser(input: { email: string; phone: string; role: string; password: string }): ReturnType<typeof addUser>;
  /** Starts the TLS listener (generating the dev certificate if needed). */
  listen(): Promise<{ address: AddressInfo; tls: TlsMaterial; ops: AddressInfo | null }>;
  /**
   * Re-reads what can change without a restart (the server key ring, the authorization policy, the
   * certificate and key) and applies it; open connections are untouched. On failure the old material
   * stays in force.
   */
  reload(): Promise<boolean>;
  /** Graceful stop: drain connections, flush mail, close the database. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

/** Opens the store `store.url` names (StoreConfigError when it cannot), then builds the app on it. */
export async function createApp(deps: Omit<AppDeps, 'store'>): Promise<App> {
  // As in buildApp, a malformed policy file stops start-up before anything is opened: checked here
  // too, since the store is opened first (`serve` must not create or migrate a database and exit 2).
  new PolicyLoader(deps.config.policy).load();
  const store = await openStore(deps.config, deps.log);
  try {
    return buildApp({ ...deps, store });
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * Wires everything from explicit dependencies. The server entry and every CLI command build the
 * service through this one function; importing this module does nothing.
 */
export function buildApp(deps: AppDeps): App {
  const { config, log } = deps;
  const clock = deps.clock ?? Date.now;
  const random = deps.random ?? randomBytes;
  const protocol = loadProtocol();
  // Before anything is opened: a malformed policy file stops start-up with a PolicyError (a
  // ConfigError: `serve` exits 2) naming the file and the problem, and leaves nothing to close.
  const policyLoader = new PolicyLoader(config.policy);
  const policy = { current: policyLoader.load() };
  log.info(
    { policy: policy.current.source, rules: policy.current.ruleCount, roles: policy.current.roles, defaultDeny: policy.current.defaultDeny },
    'authorization policy loaded',
  );
  const keys = KeyRing.open(config.dataDir, random, log);
  const store = deps.store ?? openSqliteStore(path.join(config.dataDir, DATABASE_FILE), log);
  const hasher = new PasswordHasher({
    concurrency: config.passwords.hashConcurrency,
    queueMax: config.passwords.hashQueueMax,
    random,
    ...(deps.scrypt && { params: deps.scrypt }),
  });
  const mailer =
    deps.mailer ??
    (config.mail.smtpHost
      ? createSmtpMailer(config.mail)
      : createOutboxMailer(path.join(config.dataDir, 'outbox'), config.mail.from, clock, random, log));
  const metrics = createPrometheusMetrics({
    // Active as everywhere else (isActiveSession): what `hellwall stats` and session.list count.
    activeSessions: () => store.countLiveSessions(liveBounds(clock(), config.tokens.idleSeconds * 1000)),
  });
  const mail = new MailQueue(mailer, log, { metrics, ...(deps.mailRetryDelayMs !== undefined && { retryDelayMs: deps.mailRetryDelayMs }) });
  const throttle = new Throttle(config.limits, clock, store);
  const audit = new AuditLog({ store, clock, log, metrics });
  const sessions = new SessionCache(store);
  const tokens = new TokenService({ config, store, sessions, keys, clock, random, metrics, throttle, audit, policy });
  const services: Services = {
    config,
    protocol,
    passcodes: new PasscodeService({ config, store, hasher, keys, clock, random, mail, throttle, audit }),
    tokens,
    sessions: new SessionService({ config, store, sessions, clock, tokens, audit }),
    admin: new AdminService({ config, store, sessions, hasher, clock, audit, tokens, roles: () => policy.current.roles }),
    account: new AccountService({ store, hasher, clock, tokens, throttle, mail, audit }),
  };
  const dispatch = createDispatcher(services, protocol, { metrics });
  const housekeeper = new Housekeeper({
    store,
    clock,
    log,
    metrics,
    intervalMs: config.housekeeping.intervalSeconds * 1000,
    policy: {
      idleMs: config.tokens.idleSeconds * 1000,
      keepRevokedMs: config.housekeeping.keepRevokedSeconds * 1000,
      keepAuditMs: config.audit.retentionDays * 86_400_000,
      batch: config.housekeeping.batchSize,
    },
  });
  // This process among the nodes on the database: which key it signs with, so that `hellwall key
  // retire` can refuse a key a running server still uses.
  const nodeId = `${os.hostname()}:${process.pid}:${random(3).toString('hex')}`;
  const announceNode = async (): Promise<void> => {
    try {
      await store.recordNode({ id: nodeId, currentKeyId: keys.current.id, seenAt: clock() });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not record this node in the database; the next heartbeat retries');
    }
  };
  let heartbeat: NodeJS.Timeout | undefined;
  let listener: TlsListener | undefined;
  let ops: OpsServer | undefined;
  let material: TlsMaterial | undefined;
  let closing: Promise<void> | undefined;

  const readiness = [
    {
      name: 'database',
      check: async () => {
        await store.ping();
        // A node that cannot hear other nodes' changes answers from the database only: slower, not
        // wrong, so it stays ready; the reason shows in the log and the status line.
        return null;
      },
    },
    {
      name: 'certificate',
      check: () => {
        if (!material) return 'not loaded';
        const notAfter = Date.parse(new X509Certificate(material.cert).validTo);
        return notAfter > clock() ? null : `expired ${new Date(notAfter).toISOString()}`;
      },
    },
    { name: 'listener', check: () => (listener && !closing ? null : closing ? 'shutting down' : 'not listening') },
  ];

  /**
   * Reloads one part on SIGHUP: counted and logged either way. A part that fails to load keeps what
   * it had (a typo in the policy must not open or close every door; a bad certificate must not take
   * the listener down), and does not hold back the other parts.
   */
  const reloadPart = async (
    what: 'policy' | 'keys' | 'tls',
    load: () => Record<string, unknown> | Promise<Record<string, unknown>>,
    messages: { ok: string; failed: string },
  ): Promise<boolean> => {
    try {
      const fields = await load();
      metrics.reload(what, 'ok');
      log.info(fields, messages.ok);
      return true;
    } catch (err) {
      metrics.reload(what, 'failed');
      log.error({ err: (err as Error).message }, messages.failed);
      return false;
    }
  };

  return {
    config,
    log,
    store,
    protocol,
    services,
    dispatch,
    hasher,
    mail,
    metrics,
    keys,
    housekeeper,
    policy,
    audit,
    addUser: (input) => addUser({ store, hasher, clock, roles: policy.current.roles }, input),
    async listen() {
      if (!deps.mailer && !config.mail.smtpHost) {
        log.warn({ outbox: path.join(config.dataDir, 'outbox') }, 'no SMTP server configured: mail is written to the outbox folder (development only)');
      }
      if (config.mail.smtpHost && !config.mail.smtpRejectUnauthorized) {
        log.warn('SMTP certificate verification is OFF (HELLWALL_SMTP_TLS_VERIFY=false): passcodes can be intercepted');
      }
      const tls = await loadTlsMaterial(config, log);
      material = tls;
      listener = new TlsListener({
        key: tls.key,
        cert: tls.cert,
        dispatch,
        log,
        ...listenerLimits(config),
        // Changes other processes committed (SQLite's poll; a no-op where they are pushed), once per
        // read of incoming requests.
        aroundRead: (handle) => {
          store.refresh();
          return handle();
        },
        metrics,
        // Valid: loadConfig refused a bad list at start-up with a ConfigError naming the option.
        trustedProxies: parseTrustedProxies(config.proxy.trusted),
      });
      let opsAddress: AddressInfo | null = null;
      if (config.ops.enabled) {
        ops = new OpsServer({ metrics, checks: readiness, log });
        opsAddress = await ops.listen(config.ops.port, config.ops.host);
        log.info({ host: opsAddress.address, port: opsAddress.port }, 'health and metrics listening');
      }
      const address = await listener.listen(config.port, config.host);
      log.info({ host: address.address, port: address.port }, 'hellwall listening');
      housekeeper.start();
      await announceNode();
      heartbeat = setInterval(() => void announceNode(), NODE_HEARTBEAT_MS).unref();
      return { address, tls, ops: opsAddress };
    },
    async reload() {
      const policyOk = await reloadPart(
        'policy',
        () => {
          policy.current = policyLoader.load();
          return { policy: policy.current.source, rules: policy.current.ruleCount, roles: policy.current.roles };
        },
        { ok: 'policy reloaded', failed: 'policy reload failed; the previous policy stays in force' },
      );
      // A key rotation (`hellwall key rotate`) becomes current here; keys retired meanwhile stop
      // verifying. Until then the old current key keeps making hashes, which verify after it too.
      const keysOk = await reloadPart(
        'keys',
        async () => {
          const ring = keys.reload();
          if (heartbeat) await announceNode();
          return { currentKeyId: ring.current, keyIds: ring.verifying };
        },
        { ok: 'server keys reloaded', failed: 'server key reload failed; the keys loaded before stay in use' },
      );
      const live = listener;
      if (!live) return false;
      const tlsOk = await reloadPart(
        'tls',
        async () => {
          const next = await loadTlsMaterial(config, log);
          live.setCertificate(next.key, next.cert);
          material = next;
          return { certFile: next.certFile, notAfter: new X509Certificate(next.cert).validTo };
        },
        { ok: 'certificate reloaded', failed: 'certificate reload failed; the previous certificate stays in use' },
      );
      return policyOk && keysOk && tlsOk;
    },
    close(graceMs = config.shutdownGraceMs) {
      closing ??= (async () => {
        const deadline = performance.now() + graceMs;
        // First: a pass in progress ends after its current batch, and none starts while draining.
        await housekeeper.stop();
        if (heartbeat) {
          clearInterval(heartbeat);
          await store.forgetNode(nodeId).catch(() => undefined);
        }
        await listener?.close(graceMs);
        // Mail gets what is left of the grace (at least a moment): shutdown must end within a bound.
        await mail.drain(Math.max(250, deadline - performance.now()));
        mail.close();
        await ops?.close();
        // Last before the database: mail callbacks (passcode.sent) and the final requests' events.
        await audit.close();
        sessions.close();
        await store.close();
        log.info('hellwall stopped');
      })();
      return closing;
    },
  };
}
