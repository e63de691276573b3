import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import type { AuditSink } from '../audit/audit-log.js';
import { passcodeMail, type MailQueue } from '../mail/mailer.js';
import type { Store } from '../store/store.js';
import { constantEquals, constantEqualsBytes } from '../primitives/constant-equals.js';
import { ServiceError } from '../errors.js';
import type { KeyRing } from '../keys/key-ring.js';
import { normalizeEmail, normalizeMac, normalizePhone } from '../primitives/normalize.js';
import { generatePasscode, hashPasscode } from '../primitives/passcodes.js';
import { isActiveSession } from './session-rules.js';
import { checkClockSkew } from './clock-skew.js';
import type { DeviceService } from './device-service.js';
import type { Factors, FactorStatus } from './factors.js';
import type { Tx } from '../store/store.js';
import { RateLimited, type Admission, type Throttle } from './throttle.js';
import { hashParams, type PasswordHasher } from '../primitives/passwords.js';
import { masterToken, newBaseToken } from '../primitives/tokens.js';

export interface PasscodeServiceDeps {
  readonly config: Pick<Config, 'passcodes' | 'tokens' | 'sessions' | 'auth' | 'factors'>;
  readonly store: Store;
  readonly hasher: PasswordHasher;
  readonly keys: KeyRing;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly mail: MailQueue;
  readonly throttle: Throttle;
  readonly audit: AuditSink;
  /** Second factors (src/services/factors.ts); absent: none offered (services built without them). */
  readonly factors?: Factors;
  /** Known devices (device-service.ts): the registered-device policy and the new-device alert. */
  readonly devices?: Pick<DeviceService, 'refuses' | 'loginSucceeded'>;
}

export interface LoginResult {
  token: string;
  expiresAt: number;
  renewableUntil: number;
  idleTimeoutSeconds: number;
  user: { email: string; role: string };
  /** Present when the session may only enrol these factors (factors.ts): `scope: 'enroll'`. */
  scope?: 'enroll';
  enroll?: string[];
}

const NO_FACTORS: FactorStatus = Object.freeze({ has: [], required: [], missing: [] });

/** The first two seed commands: emailing a passcode, and exchanging it for a session. */
export class PasscodeService {
  readonly #d: PasscodeServiceDeps;

  constructor(deps: PasscodeServiceDeps) {
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
    const { store, hasher, config } = this.#d;
    const ttl = config.passcodes.ttlSeconds;
    const email = normalizeEmail(input.email);
    const mac = normalizeMac(input.mac);
    // [P-2.8] Before the expensive hash: a throttled request costs the server almost nothing. The
    // attempt is counted now, whatever its outcome; only a completed login releases it.
    const admission = await this.#admit('passcode.request', input.seenIp, email, mac, log);
    const user = await store.findUserByEmail(email);
    const passwordOk = await hasher.verify(user?.passwordHash ?? hasher.dummyHash, input.password, { key: admission.group });
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
      const replaced = await store.setPasswordHash(userId, await pending, oldHash);
      log.info(
        { ...fields, outcome: replaced ? 'rehashed' : 'superseded' },
        replaced ? 'password rehashed with the current parameters' : 'password hash changed meanwhile; rehash dropped',
      );
    } catch (err) {
      log.warn({ event: 'password.rehash', outcome: 'failed', userId, err: (err as Error).message }, 'password rehash failed; the next login retries');
    }
  }

  async #issue(
    userId: number,
    email: string,
    input: { mac: string; reportedIp: string | null; seenIp: string },
    log: Logger,
  ): Promise<void> {
    const { store, clock, random, keys, config, throttle } = this.#d;
    const mac = normalizeMac(input.mac);
    const audit = { userId, email, ip: input.seenIp, mac };
    const passcode = generatePasscode(random);
    try {
      // The hour's passcodes for the account: with passcodes.maxAttempts, this bounds how many
      // second-factor guesses a day anyone who has the password can make (SECURITY.md).
      if (!(await throttle.passcodeIssued(email))) {
        log.warn({ event: 'passcode.request', outcome: 'capped', userId }, 'passcode not issued: too many for this account this hour');
        this.#d.audit.record({ action: 'passcode.request', outcome: 'denied', ...audit, detail: { reason: 'passcodes-per-hour' } }, `passcode.capped:${userId}`);
        return;
      }
      const now = clock();
      const expiresAt = now + config.passcodes.ttlSeconds * 1000;
      const key = keys.current;
      // [P-4.2] A newer request replaces the pending passcode (and resets its guess count). The
      // audit row commits with it.
      await store.transaction(async (tx) => {
        await tx.putPasscode({
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
        await this.#d.audit.recordIn(tx, { action: 'passcode.request', outcome: 'success', ...audit, detail: { reportedIp: input.reportedIp } });
      });
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
    } catch (err) {
      log.error({ event: 'passcode.request', outcome: 'store-failed', userId, err: (err as Error).message }, 'could not store passcode; none sent');
      this.#d.audit.record({ action: 'passcode.request', outcome: 'failure', ...audit, detail: { reason: 'store-failed' } });
      return;
    }
    log.info({ event: 'passcode.request', outcome: 'issued', userId, mac }, 'passcode issued');
  }

  /**
   * [P-4.3] Every factor must match. Any failure against a pending passcode counts as a guess;
   * at `maxAttempts` the passcode is void. On success the passcode is consumed in the same
   * transaction that creates the session, so it can never be used twice.
   */
  async authenticate(
    input: { email: string; phone: string; password: string; passcode: string; mac: string; seenIp: string; device?: string | undefined; clientTime?: number | undefined; factorProofs?: Readonly<Record<string, string | undefined>> },
    log: Logger,
  ): Promise<LoginResult> {
    const { store, hasher, config, clock, random, keys, throttle } = this.#d;
    const email = normalizeEmail(input.email);
    const mac = normalizeMac(input.mac);
    // [P-3.7] First: a request from another time (or a client with a wrong clock) tries no factor
    // and counts towards no limit. Audited once a minute per address group (the client can repeat it).
    try {
      checkClockSkew(input.clientTime, clock(), config.auth);
    } catch (err) {
      const detail = { reason: 'clock-skew', clientTime: input.clientTime ?? null, serverTime: clock() };
      this.#d.audit.record({ action: 'login', outcome: 'failure', email, ip: input.seenIp, mac, detail }, `login:clock-skew:${throttle.group(input.seenIp)}`);
      throw err;
    }
    // Nothing is tried while throttled, so the pending passcode's guess count does not move.
    const admission = await this.#admit('passcode.auth', input.seenIp, email, mac, log);
    let before = await store.findUserByEmail(email);
    // A login holding the valid passcode its owner waited for goes ahead of fresh passcode requests
    // in the hashing queue (an HMAC decides, before any hashing): a storm of requests cannot keep
    // operators who already have their mail from finishing.
    const ticket = { key: admission.group, priority: (await this.#holdsPasscode(before, input.passcode)) ? ('high' as const) : ('normal' as const) };
    let passwordOk = await hasher.verify(before?.passwordHash ?? hasher.dummyHash, input.password, ticket);
    // A rehash (see request()) may have replaced the hash during that check: same account, same
    // password, new hash. Check once more against what is stored now rather than fail a right
    // password; the transaction below still refuses if the hash moves yet again.
    const current = before && (await store.findUserByEmail(email));
    if (before && current && current.id === before.id && current.passwordHash !== before.passwordHash) {
      before = current;
      passwordOk = await hasher.verify(current.passwordHash, input.password, ticket);
    }

    // Slow proof work (face inference in its worker pool) before the transaction, so no lock waits
    // for it; done whatever the password and account, so its time tells nothing about either.
    const prepared = await this.#prepareProofs(input.factorProofs ?? {});

    type Evicted = { id: number; mac: string; ip: string; createdAt: number };
    type Outcome = { ok: true; result: LoginResult; sessionId: number; userId: number; evicted: Evicted[] } | { ok: false; reason: string };
    const outcome = await store.transaction(async (tx): Promise<Outcome> => {
      // Read again after the (slow, async) password check: the state may have moved meanwhile.
      const user = await tx.findUserByEmail(email);
      if (!user || user.passwordHash !== before?.passwordHash) return { ok: false, reason: 'unknown-account' };
      // Every login of this operator, on any node, waits here for the one before it: the passcode
      // is used once and the session cap counts what is committed.
      await tx.lockUser(user.id);
      const pending = await tx.getPasscode(user.id);
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
      // Known devices: where the policy wants a registered device, any other MAC fails as a factor.
      if (await this.#d.devices?.refuses(tx, user, mac)) failures.push('unregistered-device');
      // Second factors the account has must each be proven (a recovery code is not accepted here:
      // recovery flows only). Checked only when all else is right, so a wrong password burns no
      // TOTP step; a wrong one counts as a guess against the passcode like any other factor.
      const factors = this.#d.factors ? await this.#d.factors.status(user, tx) : NO_FACTORS;
      if (failures.length === 0) failures.push(...(await this.#proveFactors(user.id, factors, input.factorProofs ?? {}, tx, now, prepared)));
      if (failures.length > 0) {
        const attempts = pending.attempts + 1;
        if (now >= pending.expiresAt || attempts >= config.passcodes.maxAttempts) {
          await tx.deletePasscode(user.id);
          if (now < pending.expiresAt) failures.push('passcode-void');
        } else {
          await tx.setPasscodeAttempts(user.id, attempts);
        }
        return { ok: false, reason: failures.join(',') };
      }
      await tx.deletePasscode(user.id);
      const token = newBaseToken(random);
      const ttl = config.tokens;
      // A required factor not enrolled yet: a short session that can only enrol it (factors.ts).
      const enrolOnly = factors.missing.length > 0;
      const absoluteExpiresAt = now + (enrolOnly ? config.factors.enrollSeconds : ttl.absoluteSeconds) * 1000;
      const expiresAt = Math.min(now + ttl.ttlSeconds * 1000, absoluteExpiresAt);
      // [P-3.5] At most maxPerUser active sessions: the oldest logins make room, in this same
      // transaction, so no moment exists with more (and a failed login evicts nothing).
      const active = (await tx.listOpenSessions(user.id)).filter((s) => isActiveSession(s, now, ttl.idleSeconds * 1000));
      const evicted = active.slice(0, Math.max(0, active.length - config.sessions.maxPerUser + 1));
      const key = keys.current;
      const sessionId = await tx.createSession({
        userId: user.id,
        master: masterToken(key.master, token, mac, input.seenIp),
        keyId: key.id,
        mac,
        ip: input.seenIp,
        createdAt: now,
        expiresAt,
        absoluteExpiresAt,
        device: input.device ?? null,
        scope: enrolOnly ? 'enroll' : 'full',
      });
      // The evictions and the login are audited in this transaction: they commit together.
      const where = { userId: user.id, email: user.email, at: now };
      for (const old of evicted) {
        await tx.revokeSession(old.id, now, 'evicted');
        await this.#d.audit.recordIn(tx, {
          action: 'session.evict',
          outcome: 'success',
          ...where,
          sessionId: old.id,
          ip: old.ip,
          mac: old.mac,
          detail: { by: sessionId, maxPerUser: config.sessions.maxPerUser, createdAt: old.createdAt },
        });
      }
      await this.#d.audit.recordIn(tx, {
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
          ...(enrolOnly && { scope: 'enroll' as const, enroll: [...factors.missing] }),
        },
      };
    });

    if (!outcome.ok) {
      // The attempt was counted when it was admitted; a failure leaves it counted.
      log.info({ event: 'login', outcome: 'failure', reason: outcome.reason, email, mac }, 'login failed');
      this.#d.audit.record({ action: 'login', outcome: 'failure', userId: before?.id ?? null, email, ip: input.seenIp, mac, detail: { reason: outcome.reason } });
      // [ASVS 2.8.4] A replayed code is audited in its own right.
      if (outcome.reason.includes('-replay')) {
        this.#d.audit.record({ action: 'totp.replay', outcome: 'failure', userId: before?.id ?? null, email, ip: input.seenIp, mac, detail: { flow: 'passcode.auth' } });
      }
      // [P-4.3] One answer for every failure: nothing tells which factor was wrong.
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    await throttle.succeeded(admission).catch((err: unknown) =>
      log.warn({ event: 'login', err: (err as Error).message }, 'login counters not released; they expire by themselves'),
    );
    log.info({ event: 'login', outcome: 'success', userId: outcome.userId, sessionId: outcome.sessionId, mac }, 'login succeeded');
    // After the answer: the device and address are recorded, and a new one mails the owner.
    this.#d.devices?.loginSucceeded({ user: { id: outcome.userId, email: outcome.result.user.email }, mac, ip: input.seenIp, device: input.device ?? null, sessionId: outcome.sessionId, at: clock() }, log);
    for (const old of outcome.evicted) {
      log.info(
        { event: 'session.evicted', userId: outcome.userId, sessionId: old.id, mac: old.mac, ip: old.ip, createdAt: old.createdAt, by: outcome.sessionId, maxPerUser: config.sessions.maxPerUser },
        'oldest session ended: too many sessions for this operator',
      );
    }
    return outcome.result;
  }

  /**
   * Proves each factor in `status.has` with its proof from the request; answers the failures (the
   * factor's name, or `<name>-replay`). Absent proof fails like a wrong one.
   */
  async #proveFactors(
    userId: number,
    status: FactorStatus,
    proofs: Readonly<Record<string, string | undefined>>,
    tx: Tx,
    now: number,
    prepared: ReadonlyMap<string, unknown>,
  ): Promise<string[]> {
    const failures: string[] = [];
    for (const name of status.has) {
      const proof = proofs[name];
      const factor = this.#d.factors?.get(name);
      const verdict = proof === undefined || !factor ? 'wrong' : await factor.verify(userId, proof, tx, now, prepared.get(name));
      if (verdict !== 'ok') failures.push(verdict === 'replay' ? `${name}-replay` : name);
    }
    return failures;
  }

  /**
   * `Factor.prepare` for each proof sent whose factor has one. An unusable proof (a face image with
   * no face) throws its own error here; the attempt was admitted, so it counts like a wrong one.
   */
  async #prepareProofs(proofs: Readonly<Record<string, string | undefined>>): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    for (const [name, proof] of Object.entries(proofs)) {
      const factor = this.#d.factors?.get(name);
      if (proof !== undefined && factor?.prepare) out.set(name, await factor.prepare(proof));
    }
    return out;
  }

  /** Whether the account has a pending, unexpired passcode and this is it. */
  async #holdsPasscode(user: { id: number } | undefined, passcode: string): Promise<boolean> {
    if (!user) return false;
    const pending = await this.#d.store.getPasscode(user.id);
    const key = pending && this.#d.keys.get(pending.keyId);
    return Boolean(pending && key && this.#d.clock() < pending.expiresAt && constantEqualsBytes(hashPasscode(key.passcode, user.id, passcode), pending.hash));
  }

  /**
   * Admits a password-checking attempt (Throttle.admit); a refusal is audited (coalesced per
   * address group: server-chosen, so a client varying the email cannot multiply rows) and logged
   * with which limit fired (the client is not told).
   */
  async #admit(kind: 'passcode.request' | 'passcode.auth', ip: string, email: string, mac: string, log: Logger): Promise<Admission> {
    const { throttle } = this.#d;
    const event = kind === 'passcode.auth' ? 'login' : 'passcode.request';
    try {
      return await throttle.admit(kind, ip, email);
    } catch (err) {
      if (err instanceof RateLimited) {
        const group = throttle.group(ip);
        this.#d.audit.record(
          { action: event, outcome: 'denied', email, ip, mac, detail: { reason: 'rate-limited', scope: err.scope } },
          `${event}:rate-limited:${err.scope}:${group}`,
        );
        // Debug: a flood of refusals must not become a flood of log lines (the dispatcher logs the
        // first refusals of each connection, and the audit row is budgeted).
        log.debug({ event, outcome: 'throttled', scope: err.scope, lockedOut: err.lockedOut, email, retryAfterSeconds: err.retryAfterSeconds }, 'request throttled');
      }
      throw err;
    }
  }
}
