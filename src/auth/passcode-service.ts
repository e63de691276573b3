import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import type { AuditSink } from '../audit/audit-log.js';
import type { Metrics } from '../ops/metrics.js';
import { passcodeMail, type MailQueue } from '../mail/mailer.js';
import { ProtocolError } from '../protocol/errors.js';
import { isActiveSession, type Store } from '../store/store.js';
import { constantEquals, constantEqualsBytes } from './constant-equals.js';
import type { KeyRing } from './key-ring.js';
import { normalizeEmail, normalizeMac, normalizePhone } from './normalize.js';
import { generatePasscode, hashPasscode } from './passcodes.js';
import { ThrottledError, type Throttle } from './throttle.js';
import { hashParams, type PasswordHasher } from './passwords.js';
import { masterToken, newBaseToken } from './tokens.js';

export interface AuthDeps {
  readonly config: Config;
  readonly store: Store;
  readonly hasher: PasswordHasher;
  readonly keys: KeyRing;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly mail: MailQueue;
  readonly metrics: Metrics;
  readonly throttle: Throttle;
  readonly audit: AuditSink;
}

export interface LoginResult {
  token: string;
  expiresAt: number;
  renewableUntil: number;
  idleTimeoutSeconds: number;
  user: { email: string; role: string };
}

/** The first two seed commands: emailing a passcode, and exchanging it for a session. */
export class PasscodeService {
  readonly #d: AuthDeps;

  constructor(deps: AuthDeps) {
    this.#d = deps;
  }

  /**
   * [P-4.2] Always does one password verification (against a dummy hash for unknown accounts) and
   * always answers the same, so neither the answer nor its timing says whether the account exists
   * or the password was right. Mail goes out in the background for the same reason.
   */
  async request(
    input: { email: string; password: string; mac: string; reportedIp: string | null; seenIp: string },
    log: Logger,
  ): Promise<{ expiresInSeconds: number }> {
    const { store, hasher, config, throttle } = this.#d;
    const ttl = config.passcodes.ttlSeconds;
    const email = normalizeEmail(input.email);
    // [P-2.8] Before the expensive hash: a throttled request costs the server almost nothing.
    const mac = normalizeMac(input.mac);
    this.#throttled(() => throttle.beforeAttempt('passcode.request', input.seenIp, email), 'passcode.request', { email, mac, ip: input.seenIp }, log);
    const user = store.findUserByEmail(email);
    const passwordOk = await hasher.verify(user?.passwordHash ?? hasher.dummyHash, input.password);
    // Counted per email as sent, whether or not the account exists: limits reveal nothing.
    if (passwordOk && user && !user.disabled) throttle.success(input.seenIp, email);
    else throttle.failure(input.seenIp, email);
    if (!user || user.disabled || !passwordOk) {
      const reason = !user ? 'unknown-account' : user.disabled ? 'disabled' : 'bad-password';
      log.info({ event: 'passcode.request', outcome: 'refused', reason, email }, 'passcode request refused');
      // Group-committed after the answer, like the success path's write: the timing stays alike.
      this.#d.audit.record({ action: 'passcode.request', outcome: 'failure', userId: user?.id ?? null, email, ip: input.seenIp, mac, detail: { reason } });
      return { expiresInSeconds: ttl };
    }
    // Answer first, then store and mail: an fsync'd write (and, under lock contention, a failing
    // one) only on the right-password path would otherwise show in the answer's timing.
    this.#d.mail.later(() => this.#issue(user.id, user.email, input, log));
    // After answering too: a second hash must neither delay the answer nor show in its timing.
    setImmediate(() => void this.#rehash(user.id, user.passwordHash, input.password, log));
    return { expiresInSeconds: ttl };
  }

  /**
   * Replaces a hash made with weaker parameters than the hasher's current ones, now that the right
   * password is at hand (the only time it is). Background work: it runs only when a hashing slot is
   * free, so it never queues ahead of a client; when skipped or failed, the next login tries again.
   */
  async #rehash(userId: number, oldHash: string, password: string, log: Logger): Promise<void> {
    const { hasher, store } = this.#d;
    try {
      if (!hasher.needsRehash(oldHash)) return;
      const fields = { event: 'password.rehash', userId, from: hashParams(oldHash), to: hasher.params };
      const pending = hasher.hashIfIdle(password);
      if (!pending) {
        log.info({ ...fields, outcome: 'skipped-busy' }, 'password rehash skipped: hashing is busy');
        return;
      }
      // Only over the hash that was verified: a password changed meanwhile must not be undone.
      const replaced = store.setPasswordHash(userId, await pending, oldHash);
      log.info(
        { ...fields, outcome: replaced ? 'rehashed' : 'superseded' },
        replaced ? 'password rehashed with the current parameters' : 'password hash changed meanwhile; rehash dropped',
      );
    } catch (err) {
      log.warn({ event: 'password.rehash', outcome: 'failed', userId, err: (err as Error).message }, 'password rehash failed; the next login retries');
    }
  }

  #issue(
    userId: number,
    email: string,
    input: { mac: string; reportedIp: string | null; seenIp: string },
    log: Logger,
  ): void {
    const { store, clock, random, keys, config } = this.#d;
    const now = clock();
    const passcode = generatePasscode(random);
    const mac = normalizeMac(input.mac);
    const expiresAt = now + config.passcodes.ttlSeconds * 1000;
    const key = keys.current;
    const audit = { userId, email, ip: input.seenIp, mac };
    try {
      // [P-4.2] A newer request replaces the pending passcode (and resets its guess count). The
      // audit row commits with it.
      store.transaction(() => {
        store.putPasscode({
        userId,
        hash: hashPasscode(key.passcode, userId, passcode),
        keyId: key.id,
        mac,
        seenIp: input.seenIp,
        reportedIp: input.reportedIp,
        createdAt: now,
        expiresAt,
        attempts: 0,
        });
        this.#d.audit.record({ action: 'passcode.request', outcome: 'success', ...audit, detail: { reportedIp: input.reportedIp } });
      });
    } catch (err) {
      log.error({ event: 'passcode.request', outcome: 'store-failed', userId, err: (err as Error).message }, 'could not store passcode; none sent');
      this.#d.audit.record({ action: 'passcode.request', outcome: 'failure', ...audit, detail: { reason: 'store-failed' } });
      return;
    }
    this.#d.mail.enqueue(
      passcodeMail({ to: email, passcode, expiresAt, seenIp: input.seenIp, reportedIp: input.reportedIp, mac }),
      'passcode',
      (result) =>
        this.#d.audit.record({
          action: 'passcode.sent',
          outcome: result.ok ? 'success' : 'failure',
          ...audit,
          detail: { attempts: result.attempts, ...(result.error !== undefined && { error: result.error }) },
        }),
    );
    log.info({ event: 'passcode.request', outcome: 'issued', userId, mac }, 'passcode issued');
  }

  /**
   * [P-4.3] Every factor must match. Any failure against a pending passcode counts as a guess;
   * at `maxAttempts` the passcode is void. On success the passcode is consumed in the same
   * transaction that creates the session, so it can never be used twice.
   */
  async authenticate(
    input: { email: string; phone: string; password: string; passcode: string; mac: string; seenIp: string; device?: string | undefined },
    log: Logger,
  ): Promise<LoginResult> {
    const { store, hasher, config, clock, random, keys, throttle } = this.#d;
    const email = normalizeEmail(input.email);
    const mac = normalizeMac(input.mac);
    // Nothing is tried while throttled, so the pending passcode's guess count does not move.
    this.#throttled(() => throttle.beforeAttempt('passcode.auth', input.seenIp, email), 'login', { email, mac, ip: input.seenIp }, log);
    let before = store.findUserByEmail(email);
    let passwordOk = await hasher.verify(before?.passwordHash ?? hasher.dummyHash, input.password);
    // A rehash (see request()) may have replaced the hash during that check: same account, same
    // password, new hash. Check once more against what is stored now rather than fail a right
    // password; the transaction below still refuses if the hash moves yet again.
    const current = before && store.findUserByEmail(email);
    if (before && current && current.id === before.id && current.passwordHash !== before.passwordHash) {
      before = current;
      passwordOk = await hasher.verify(current.passwordHash, input.password);
    }

    type Evicted = { id: number; mac: string; ip: string; createdAt: number };
    const outcome = store.transaction((): { ok: true; result: LoginResult; sessionId: number; userId: number; evicted: Evicted[] } | { ok: false; reason: string } => {
      // Read again after the (slow, async) password check: the state may have moved meanwhile.
      const user = store.findUserByEmail(email);
      if (!user || user.passwordHash !== before?.passwordHash) return { ok: false, reason: 'unknown-account' };
      const pending = store.getPasscode(user.id);
      if (!pending) return { ok: false, reason: 'no-passcode' };
      const now = clock();
      const failures: string[] = [];
      if (user.disabled) failures.push('disabled');
      if (!passwordOk) failures.push('password');
      if (!constantEquals(normalizePhone(user.phone), normalizePhone(input.phone))) failures.push('phone');
      if (!constantEquals(pending.mac, mac)) failures.push('mac');
      // With the key the passcode was hashed with (a rotation may have come since); none once retired.
      const passcodeKey = keys.get(pending.keyId);
      if (!passcodeKey) failures.push('passcode-key-retired');
      else if (!constantEqualsBytes(hashPasscode(passcodeKey.passcode, user.id, input.passcode), pending.hash)) failures.push('passcode');
      if (now >= pending.expiresAt) failures.push('passcode-expired');
      if (failures.length > 0) {
        const attempts = pending.attempts + 1;
        if (now >= pending.expiresAt || attempts >= config.passcodes.maxAttempts) {
          store.deletePasscode(user.id);
          if (now < pending.expiresAt) failures.push('passcode-void');
        } else {
          store.setPasscodeAttempts(user.id, attempts);
        }
        return { ok: false, reason: failures.join(',') };
      }
      store.deletePasscode(user.id);
      const token = newBaseToken(random);
      const ttl = config.tokens;
      const absoluteExpiresAt = now + ttl.absoluteSeconds * 1000;
      const expiresAt = Math.min(now + ttl.ttlSeconds * 1000, absoluteExpiresAt);
      // [P-3.5] At most maxPerUser active sessions: the oldest logins make room, in this same
      // transaction, so no moment exists with more (and a failed login evicts nothing).
      const active = store.listOpenSessions(user.id).filter((s) => isActiveSession(s, now, ttl.idleSeconds * 1000));
      const evicted = active.slice(0, Math.max(0, active.length - config.sessions.maxPerUser + 1));
      const key = keys.current;
      const sessionId = store.createSession({
        userId: user.id,
        master: masterToken(key.master, token, mac, input.seenIp),
        keyId: key.id,
        mac,
        ip: input.seenIp,
        createdAt: now,
        expiresAt,
        absoluteExpiresAt,
        device: input.device ?? null,
      });
      // The evictions and the login are audited in this transaction: they commit together.
      const where = { userId: user.id, email: user.email, at: now };
      for (const old of evicted) {
        store.revokeSession(old.id, now, 'evicted');
        this.#d.audit.record({
          action: 'session.evict',
          outcome: 'success',
          ...where,
          sessionId: old.id,
          ip: old.ip,
          mac: old.mac,
          detail: { by: sessionId, maxPerUser: config.sessions.maxPerUser, createdAt: old.createdAt },
        });
      }
      this.#d.audit.record({
        action: 'login',
        outcome: 'success',
        ...where,
        sessionId,
        ip: input.seenIp,
        mac,
        detail: { device: input.device ?? null, evicted: evicted.length },
      });
      return {
        ok: true,
        sessionId,
        userId: user.id,
        evicted: evicted.map((s) => ({ id: s.id, mac: s.mac, ip: s.ip, createdAt: s.createdAt })),
        result: {
          token,
          expiresAt,
          renewableUntil: absoluteExpiresAt,
          idleTimeoutSeconds: ttl.idleSeconds,
          user: { email: user.email, role: user.role },
        },
      };
    });

    if (!outcome.ok) {
      throttle.failure(input.seenIp, email);
      log.info({ event: 'login', outcome: 'failure', reason: outcome.reason, email, mac}, 'login failed');
      this.#d.audit.record({ action: 'login', outcome: 'failure', userId: before?.id ?? null, email, ip: input.seenIp, mac, detail: { reason: outcome.reason } });
      // [P-4.3] One answer for every failure: nothing tells which factor was wrong.
      throw new ProtocolError('E_AUTH_FAILED', 'authentication failed');
    }
    throttle.success(input.seenIp, email);
    log.info({ event: 'login', outcome: 'success', userId: outcome.userId, sessionId: outcome.sessionId, mac}, 'login succeeded');
    for (const old of outcome.evicted) {
      log.info(
        { event: 'session.evicted', userId: outcome.userId, sessionId: old.id, mac: old.mac, ip: old.ip, createdAt: old.createdAt, by: outcome.sessionId, maxPerUser: config.sessions.maxPerUser },
        'oldest session ended: too many sessions for this operator',
      );
    }
    return outcome.result;
  }

  /** Runs a throttle check; a refusal is logged with which limit fired (the client is not told). */
  #throttled(check: () => void, event: 'passcode.request' | 'login', who: { email: string; mac: string; ip: string }, log: Logger): void {
    const { email } = who;
    try {
      check();
    } catch (err) {
      if (err instanceof ThrottledError) {
        this.#d.audit.record(
          { action: event, outcome: 'denied', ...who, detail: { reason: 'rate-limited', scope: err.scope } },
          `${event}:rate-limited:${who.ip}:${email}`,
        );
        log.info(
          { event, outcome: 'throttled', scope: err.scope, lockedOut: this.#d.throttle.lockedOut(email), email, retryAfterSeconds: err.details?.retryAfterSeconds },
          'request throttled',
        );
      }
      throw err;
    }
  }
}
