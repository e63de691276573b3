import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { AuditLog } from './audit/audit-log.js';
import { AccountService } from './services/account-service.js';
import { createFaceParts, FaceService } from './services/face-service.js';
import { SecretBox } from './keys/secret-box.js';
import { AdminService } from './services/admin-service.js';
import { Alerts } from './services/alerts.js';
import { DeviceService } from './services/device-service.js';
import { KeyRing, NODE_HEARTBEAT_MS } from './keys/key-ring.js';
import { PasscodeService } from './services/passcode-service.js';
import { EnrolmentService } from './services/enrolment-service.js';
import { Factors, parseFactorRequirements } from './services/factors.js';
import { RecoveryService } from './services/recovery-service.js';
import { TotpFactor } from './services/totp-service.js';
import { PasswordHasher, type ScryptParams } from './primitives/passwords.js';
import { PolicyLoader, type CompiledPolicy } from './services/policy.js';
import { Throttle, type BucketPeers } from './services/throttle.js';
import { SessionService } from './services/session-service.js';
import { TokenService } from './services/token-service.js';
import { addUser } from './services/users.js';
import type { Config } from './config.js';
import type { Clock, Logger, RandomBytes } from './deps.js';
import { parseTrustedProxies } from './net/trusted-proxies.js';
import type { Services } from './handlers/context.js';
import { X509Certificate } from 'node:crypto';
import { HOUSEKEEPING_BATCH_MS, Housekeeper } from './ops/housekeeper.js';
import { OpsServer } from './ops/http.js';
import { ConsoleServer } from './console/console-server.js';
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
  /** The other workers of one primary (src/workers), sharing the per-address rate limits. */
  readonly bucketPeers?: BucketPeers;
  /**
   * The store, already open (createApp opens the configured one). Absent: the SQLite file in the
   * data directory, opened here (tests and the CLI's embedded default).
   */
  readonly store?: Store;
  /** Where the optional face package is (tests point it elsewhere); absent: packages/face of this checkout. */
  readonly facePackageDir?: string;
  /**
   * The compiled protocol, when the caller already has one: compiling every schema costs about a
   * quarter of a second of CPU, which a process building one app pays once, and a test process
   * building dozens of apps would pay each time. Absent: protocol/ of this checkout, compiled here.
   */
  readonly protocol?: Protocol;
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
  /** The app's time and randomness, for work done beside the services (the CLI's key commands). */
  readonly clock: Clock;
  readonly random: RandomBytes;
  addUser(input: { email: string; phone: string; role: string; password: string }): ReturnType<typeof addUser>;
  /** Starts the TLS listener (generating the dev certificate if needed). */
  listen(): Promise<{ address: AddressInfo; tls: TlsMaterial; ops: AddressInfo | null; console: AddressInfo | null }>;
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
  const protocol = deps.protocol ?? loadProtocol();
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
    // Never more parallel hashes than cores less one: each takes a whole core, and the event loop
    // (every token check) needs one. On 2 cores, 2 hashes at once halved check throughput during a
    // login storm and doubled its p99; 1 kept 0.93× (README "Benchmarks", `bench --storm`).
    concurrency: Math.max(1, Math.min(config.passwords.hashConcurrency, os.availableParallelism() - 1)),
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
  // The lockout tells the alerts (declared below: called only once requests flow).
  const throttle = new Throttle(config.limits, clock, store, (email, until, ip) => alerts.accountLocked(email, until, ip));
  if (deps.bucketPeers) throttle.share(deps.bucketPeers);
  const audit = new AuditLog({ store, clock, log, metrics });
  const alerts = new Alerts({ config, mail, audit, clock, log, store });
  const sessions = new SessionCache(store);
  // The face factor (off by default): its template sealed like every other secret at rest.
  const face = createFaceParts({ config: config.face, store, secrets: new SecretBox(keys, random), clock, audit, log, packageDir: deps.facePackageDir });
  // Second factors (src/services/factors.ts): login and recovery ask this registry, never a factor.
  const totp = new TotpFactor({ config, store, box: new SecretBox(keys, random), clock, random, audit, alerts });
  const factors = new Factors([totp, ...(face.factor ? [face.factor] : [])], parseFactorRequirements(config.factors.require));
  const tokens = new TokenService({ config, store, sessions, keys, clock, random, metrics, throttle, audit, policy, alerts });
  const devices = new DeviceService({ config, store, sessions, clock, audit, alerts, mail, tokens });
  const services: Services = {
    config,
    protocol,
    passcodes: new PasscodeService({ config, store, hasher, keys, clock, random, mail, throttle, audit, factors, devices }),
    tokens,
    sessions: new SessionService({ config, store, sessions, clock, tokens, audit }),
    admin: new AdminService({ config, store, sessions, hasher, clock, audit, tokens, roles: () => policy.current.roles, alerts }),
    account: new AccountService({ store, hasher, clock, tokens, throttle, mail, audit, alerts }),
    devices,
    face: new FaceService({ face: face.factor, tokens, throttle }),
    enrolment: new EnrolmentService({ store, clock, tokens, throttle, audit, factors }),
    recovery: new RecoveryService({ config, store, hasher, keys, clock, random, mail, throttle, audit, factors, totp, alerts }),
  };
  const dispatch = createDispatcher(services, protocol, { metrics });
  const housekeeper = new Housekeeper({
    store,
    clock,
    log,
    metrics,
    intervalMs: config.housekeeping.intervalSeconds * 1000,
    maxBatchMs: HOUSEKEEPING_BATCH_MS,
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
  // The store is polled once per event-loop turn that reads requests (aroundRead below).
  let refreshedThisTurn = false;
  const nextTurn = (): void => {
    refreshedThisTurn = false;
  };
  let ops: OpsServer | undefined;
  let adminConsole: ConsoleServer | undefined;
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
    clock,
    random,
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
        // Changes other processes committed (SQLite's poll; a no-op where they are pushed), before
        // the first read of incoming requests in each turn of the event loop: the reads of one turn
        // are handled back to back, and a poll costs several µs (one per request at 16 × 1).
        aroundRead: (handle) => {
          if (!refreshedThisTurn) {
            refreshedThisTurn = true;
            store.refresh();
            setImmediate(nextTurn);
          }
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
      let consoleAddress: AddressInfo | null = null;
      if (config.console.enabled) {
        // Its own HTTPS server with the listener's certificate; it uses the services the wire uses.
        const { passcodes, sessions: sessionService, admin, devices } = services;
        adminConsole = new ConsoleServer(
          { config, log, clock, random, passcodes, sessions: sessionService, admin, devices, store, housekeeper, mail, audit, readiness, roles: () => policy.current.roles },
          tls,
        );
        consoleAddress = await adminConsole.listen(config.console.port, config.console.host);
        if (consoleAddress) log.info({ url: `https://${consoleAddress.address}:${consoleAddress.port}/` }, 'admin console listening');
      }
      const address = await listener.listen(config.port, config.host);
      log.info({ host: address.address, port: address.port }, 'hellwall listening');
      housekeeper.start();
      // Loads the face package and its models now: the log says at once whether the factor can
      // run, and the first login does not pay for the start. Not awaited: the listener is up.
      if (face.engine) void face.engine.start();
      await announceNode();
      heartbeat = setInterval(() => void announceNode(), NODE_HEARTBEAT_MS).unref();
      return { address, tls, ops: opsAddress, console: consoleAddress };
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
          adminConsole?.setCertificate(next.key, next.cert);
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
        // The console first: no administrator action may start while the rest shuts down.
        await adminConsole?.close();
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
        await face.engine?.close();
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
