import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { deriveKeys, loadOrCreateServerKey } from './auth/keys.js';
import { PasscodeService } from './auth/passcode-service.js';
import { PasswordHasher, type ScryptParams } from './auth/passwords.js';
import { TokenService } from './auth/token-service.js';
import { addUser } from './auth/users.js';
import type { Config } from './config.js';
import type { Clock, Logger, RandomBytes } from './deps.js';
import type { Services } from './handlers/context.js';
import { createOutboxMailer, createSmtpMailer, MailQueue, type Mailer } from './mail/mailer.js';
import { loadProtocol, type Protocol } from './protocol/registry.js';
import { createDispatcher, type DispatchFn } from './server/dispatcher.js';
import { listenerLimits, TlsListener } from './server/tls-server.js';
import { openSqliteStore } from './store/sqlite-store.js';
import type { Store } from './store/store.js';
import { loadTlsMaterial, type TlsMaterial } from './tls/tls-files.js';

export const DATABASE_FILE = 'hellwall.db';

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
  addUser(input: { email: string; phone: string; role: string; password: string }): ReturnType<typeof addUser>;
  /** Starts the TLS listener (generating the dev certificate if needed). */
  listen(): Promise<{ address: AddressInfo; tls: TlsMaterial }>;
  /** Graceful stop: drain connections, flush mail, close the database. Idempotent. */
  close(graceMs?: number): Promise<void>;
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
  const keys = deriveKeys(loadOrCreateServerKey(config.dataDir, random, log));
  const store = openSqliteStore(path.join(config.dataDir, DATABASE_FILE), log);
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
  const mail = new MailQueue(mailer, log, deps.mailRetryDelayMs === undefined ? {} : { retryDelayMs: deps.mailRetryDelayMs });
  const authDeps = { config, store, hasher, keys, clock, random, mail };
  const services: Services = {
    config,
    protocol,
    passcodes: new PasscodeService(authDeps),
    tokens: new TokenService(authDeps),
  };
  const dispatch = createDispatcher(services, protocol, clock);
  let listener: TlsListener | undefined;
  let closing: Promise<void> | undefined;

  return {
    config,
    log,
    store,
    protocol,
    services,
    dispatch,
    hasher,
    mail,
    addUser: (input) => addUser({ store, hasher, clock }, input),
    async listen() {
      if (!deps.mailer && !config.mail.smtpHost) {
        log.warn({ outbox: path.join(config.dataDir, 'outbox') }, 'no SMTP server configured: mail is written to the outbox folder (development only)');
      }
      if (config.mail.smtpHost && !config.mail.smtpRejectUnauthorized) {
        log.warn('SMTP certificate verification is OFF (HELLWALL_SMTP_TLS_VERIFY=false): passcodes can be intercepted');
      }
      const tls = await loadTlsMaterial(config, log);
      listener = new TlsListener({
        key: tls.key,
        cert: tls.cert,
        dispatch,
        log,
        ...listenerLimits(config),
        aroundRead: (handle) => store.readBatch(handle),
      });
      const address = await listener.listen(config.port, config.host);
      log.info({ host: address.address, port: address.port }, 'hellwall listening');
      return { address, tls };
    },
    close(graceMs = 5000) {
      closing ??= (async () => {
        await listener?.close(graceMs);
        await mail.drain();
        mail.close();
        store.close();
        log.info('hellwall stopped');
      })();
      return closing;
    },
  };
}
