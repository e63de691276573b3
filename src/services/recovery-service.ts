import type { AuditAction, AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import { ServiceError } from '../errors.js';
import type { KeyRing } from '../keys/key-ring.js';
import type { MailMessage, MailQueue } from '../mail/mailer.js';
import { constantEquals, constantEqualsBytes } from '../primitives/constant-equals.js';
import { normalizeEmail, normalizeMac } from '../primitives/normalize.js';
import { generatePasscode, hashPasscode } from '../primitives/passcodes.js';
import { passwordPolicyError, type PasswordHasher } from '../primitives/passwords.js';
import type { Store, Tx, UserRecord } from '../store/store.js';
import { checkClockSkew } from './clock-skew.js';
import type { Factors } from './factors.js';
import { RateLimited, type Admission, type Throttle } from './throttle.js';
import type { FactorAlerts, TotpFactor } from './totp-service.js';

export interface RecoveryServiceDeps {
  readonly config: Pick<Config, 'passcodes' | 'auth'>;
  readonly store: Store;
  readonly hasher: PasswordHasher;
  readonly keys: KeyRing;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly mail: MailQueue;
  readonly throttle: Throttle;
  readonly audit: AuditSink;
  readonly factors: Factors;
  readonly totp: TotpFactor;
  readonly alerts?: FactorAlerts;
}

/** What every recovery request carries. */
interface RecoveryBase {
  readonly email: string;
  /** The recovery passcode recovery.request mailed. */
  readonly passcode: string;
  readonly mac: string;
  readonly seenIp: string;
  readonly clientTime?: number | undefined;
}

type Flow = 'recovery.password' | 'recovery.totp' | 'recovery.device';

/** A flow's checks, run in its transaction after the passcode: failures, or what to do on success. */
type Outcome<T> = { ok: true; value: T; usedRecoveryCode: number | null } | { ok: false; reason: string };

/**
 * Self-service recovery (4Auth's recovery menu). Every flow needs a recovery passcode mailed to the
 * account (recovery.request) and then proves every factor the operator still has, standing in for
 * only the one being recovered (ASVS 6.4.3):
 *
 * | flow | proves | stands in for | then |
 * | --- | --- | --- | --- |
 * | recovery.password | passcode, TOTP or a recovery code, other factors | password | new password, every session ends |
 * | recovery.totp | passcode, password, recovery code, other factors | TOTP | TOTP removed, re-enrolment required, every session ends |
 * | recovery.device | passcode, password, TOTP, other factors | device (MAC) | device registered, the old device's sessions end |
 *
 * An account with no second factor cannot recover by itself (an administrator resets it): the
 * mailbox alone must not be enough to take an account over. Every attempt is counted with the
 * other second-factor attempts (Throttle.admit, like passcode.auth), a wrong answer counts against
 * the recovery passcode (void after `passcodes.maxAttempts`), and every failure is the same
 * E_AUTH_FAILED, whichever factor was wrong [P-4.3].
 */
export class RecoveryService {
  readonly #d: RecoveryServiceDeps;

  constructor(deps: RecoveryServiceDeps) {
    this.#d = deps;
  }

  /**
   * recovery.request: mails a recovery passcode when the account exists and is enabled; answers the
   * same either way, at once (the store write and the mail run after the answer), so it tells
   * nothing about the account.
   */
  async request(input: { email: string; mac: string; seenIp: string; reportedIp: string | null; clientTime?: number | undefined }, log: Logger): Promise<{ expiresInSeconds: number }> {
    const { store, config } = this.#d;
    const email = normalizeEmail(input.email);
    const mac = normalizeMac(input.mac);
    this.#skew('recovery.request', input.clientTime, email, input.seenIp, mac);
    await this.#admit('recovery.request', 'passcode.request', input.seenIp, email, mac);
    const user = await store.findUserByEmail(email);
    if (!user || user.disabled) {
      const reason = !user ? 'unknown-account' : 'disabled';
      this.#d.audit.record({ action: 'recovery.request', outcome: 'failure', userId: user?.id ?? null, email, ip: input.seenIp, mac, detail: { reason } });
      log.info({ event: 'recovery.request', outcome: 'refused', reason, email }, 'recovery request refused');
    } else {
      this.#d.mail.later(() => this.#issue(user, mac, input, log));
    }
    return { expiresInSeconds: config.passcodes.ttlSeconds };
  }

  async #issue(user: UserRecord, mac: string, input: { seenIp: string; reportedIp: string | null }, log: Logger): Promise<void> {
    const { store, clock, random, keys, config, throttle } = this.#d;
    const audit = { userId: user.id, email: user.email, ip: input.seenIp, mac };
    try {
      // The same hourly cap as login passcodes: together they bound second-factor guesses a day.
      if (!(await throttle.passcodeIssued(user.email))) {
        this.#d.audit.record({ action: 'recovery.request', outcome: 'denied', ...audit, detail: { reason: 'passcodes-per-hour' } }, `recovery.capped:${user.id}`);
        return;
      }
      const passcode = generatePasscode(random);
      const now = clock();
      const expiresAt = now + config.passcodes.ttlSeconds * 1000;
      const key = keys.current;
      await store.transaction(async (tx) => {
        await tx.putRecoveryPasscode({
          userId: user.id,
          hash: hashPasscode(key.passcode, user.id, `recovery:${passcode}`),
          keyId: key.id,
          mac,
          seenIp: input.seenIp,
          reportedIp: input.reportedIp,
          createdAt: now,
          expiresAt,
          attempts: 0,
        });
        await this.#d.audit.recordIn(tx, { action: 'recovery.request', outcome: 'success', at: now, ...audit });
      });
      this.#d.mail.enqueue(recoveryMail(user.email, passcode, expiresAt, input.seenIp, mac), 'recovery-passcode');
      log.info({ event: 'recovery.request', outcome: 'issued', userId: user.id, mac }, 'recovery passcode issued');
    } catch (err) {
      log.error({ event: 'recovery.request', outcome: 'store-failed', userId: user.id, err: (err as Error).message }, 'could not store recovery passcode; none sent');
    }
  }

  /** recovery.password (forgotten password): passcode + TOTP or a recovery code → new password. */
  async password(
    input: RecoveryBase & { newPassword: string; totp?: string | undefined; recoveryCode?: string | undefined; factorProofs?: Readonly<Record<string, string | undefined>> },
    log: Logger,
  ): Promise<{ sessionsEnded: number }> {
    const { hasher } = this.#d;
    const flow = 'recovery.password';
    const { email, mac, admission } = await this.#begin(flow, input);
    // The policy judges the new password before any factor is tried: it says nothing about the account.
    const policy = passwordPolicyError(input.newPassword, { email });
    if (policy) throw new ServiceError('invalid', policy);
    // Hashed before the transaction (slow work stays outside it); wasted when a factor is wrong.
    const passwordHash = await hasher.hash(input.newPassword, { key: admission.group });
    const prepared = await this.#prepare(input.factorProofs);
    const result = await this.#run(flow, input, email, mac, async (tx, user, now): Promise<Outcome<number>> => {
      const status = await this.#d.factors.status(user, tx);
      if (!status.has.includes('totp')) return { ok: false, reason: 'no-totp' };
      const others = await this.#proveOthers(user.id, status.has, ['totp'], input.factorProofs ?? {}, prepared, tx, now);
      if (others.length > 0) return { ok: false, reason: others.join(',') };
      let usedRecoveryCode: number | null = null;
      if (input.totp !== undefined) {
        const verdict = await this.#d.totp.verify(user.id, input.totp, tx, now);
        if (verdict !== 'ok') return { ok: false, reason: verdict === 'replay' ? 'totp-replay' : 'totp' };
      } else if (input.recoveryCode !== undefined) {
        const used = await this.#d.totp.useRecoveryCode(user.id, input.recoveryCode, tx);
        if (!used.ok) return { ok: false, reason: 'recovery-code' };
        usedRecoveryCode = used.remaining;
      } else return { ok: false, reason: 'totp' };
      if (!(await tx.setPasswordHash(user.id, passwordHash, user.passwordHash))) return { ok: false, reason: 'password-changed-meanwhile' };
      await tx.deletePasscode(user.id);
      const ended = await tx.revokeUserSessions(user.id, now, 'password-recovered');
      await this.#d.audit.recordIn(tx, {
        action: flow,
        outcome: 'success',
        at: now,
        userId: user.id,
        email: user.email,
        ip: input.seenIp,
        mac,
        detail: { with: usedRecoveryCode === null ? 'totp' : 'recovery-code', sessionsEnded: ended },
      });
      return { ok: true, value: ended, usedRecoveryCode };
    }, admission, log);
    this.#d.alerts?.send('password-changed', { id: result.user.id, email: result.user.email }, { ip: input.seenIp, mac, by: 'recovery' });
    return { sessionsEnded: result.value };
  }

  /** recovery.totp (lost authenticator): passcode + password + recovery code → TOTP removed. */
  async totp(
    input: RecoveryBase & { password: string; recoveryCode: string; factorProofs?: Readonly<Record<string, string | undefined>> },
    log: Logger,
  ): Promise<{ sessionsEnded: number }> {
    const flow = 'recovery.totp';
    const { email, mac, admission } = await this.#begin(flow, input);
    const passwordOk = await this.#password(email, input.password, admission);
    const prepared = await this.#prepare(input.factorProofs);
    const result = await this.#run(flow, input, email, mac, async (tx, user, now): Promise<Outcome<number>> => {
      if (!passwordOk(user)) return { ok: false, reason: 'password' };
      const status = await this.#d.factors.status(user, tx);
      if (!status.has.includes('totp')) return { ok: false, reason: 'no-totp' };
      const others = await this.#proveOthers(user.id, status.has, ['totp'], input.factorProofs ?? {}, prepared, tx, now);
      if (others.length > 0) return { ok: false, reason: others.join(',') };
      const used = await this.#d.totp.useRecoveryCode(user.id, input.recoveryCode, tx);
      if (!used.ok) return { ok: false, reason: 'recovery-code' };
      await this.#d.totp.remove(user.id, tx);
      // Re-enrolment at the next login, whatever the role requires: the operator had chosen TOTP.
      await tx.putFactor({ userId: user.id, factor: 'totp', confirmedAt: null, mustEnroll: true, lastStep: 0, createdAt: now });
      const ended = await tx.revokeUserSessions(user.id, now, 'totp-recovered');
      await this.#d.audit.recordIn(tx, { action: flow, outcome: 'success', at: now, userId: user.id, email: user.email, ip: input.seenIp, mac, detail: { sessionsEnded: ended } });
      return { ok: true, value: ended, usedRecoveryCode: 0 };
    }, admission, log);
    this.#d.alerts?.send('totp-removed', { id: result.user.id, email: result.user.email }, { ip: input.seenIp, mac, by: 'recovery' });
    return { sessionsEnded: result.value };
  }

  /** recovery.device (4Auth "update MAC"): passcode + password + TOTP → this device registered. */
  async device(
    input: RecoveryBase & { password: string; totp: string; oldMac?: string | undefined; name?: string | undefined; factorProofs?: Readonly<Record<string, string | undefined>> },
    log: Logger,
  ): Promise<{ sessionsEnded: number }> {
    const flow = 'recovery.device';
    const { email, mac, admission } = await this.#begin(flow, input);
    const oldMac = input.oldMac === undefined ? null : normalizeMac(input.oldMac);
    const passwordOk = await this.#password(email, input.password, admission);
    const prepared = await this.#prepare(input.factorProofs);
    const result = await this.#run(flow, input, email, mac, async (tx, user, now): Promise<Outcome<number>> => {
      if (!passwordOk(user)) return { ok: false, reason: 'password' };
      const status = await this.#d.factors.status(user, tx);
      if (!status.has.includes('totp')) return { ok: false, reason: 'no-totp' };
      const others = await this.#proveOthers(user.id, status.has, ['totp'], input.factorProofs ?? {}, prepared, tx, now);
      if (others.length > 0) return { ok: false, reason: others.join(',') };
      const verdict = await this.#d.totp.verify(user.id, input.totp, tx, now);
      if (verdict !== 'ok') return { ok: false, reason: verdict === 'replay' ? 'totp-replay' : 'totp' };
      // The known-devices list (src/services/device-service.ts): this MAC registered, the old one forgotten.
      await tx.registerDevice(user.id, mac, input.name ?? null, now, 'recovery');
      if (oldMac !== null && oldMac !== mac) await tx.deleteDevice(user.id, oldMac);
      // The old device's sessions: the one named, or every device but this one.
      let ended = 0;
      for (const s of await tx.listOpenSessions(user.id)) {
        const old = oldMac === null ? s.mac !== mac : s.mac === oldMac;
        if (old && (await tx.revokeSession(s.id, now, 'device-replaced'))) ended++;
      }
      await tx.deletePasscode(user.id);
      await this.#d.audit.recordIn(tx, {
        action: flow,
        outcome: 'success',
        at: now,
        userId: user.id,
        email: user.email,
        ip: input.seenIp,
        mac,
        detail: { oldMac, sessionsEnded: ended },
      });
      return { ok: true, value: ended, usedRecoveryCode: null };
    }, admission, log);
    return { sessionsEnded: result.value };
  }

  /**
   * The administrator's way out when an operator lost both the authenticator and the recovery
   * codes (`hellwall user totp-remove`): the authenticator is removed and must be enrolled again at
   * the next login; the operator's sessions go on. Throws not-found for an unknown account and
   * conflict when there is no authenticator; audited either way with the administrator as actor.
   */
  async adminRemoveTotp(actor: string, email: string): Promise<UserRecord> {
    const { store, clock } = this.#d;
    const now = clock();
    const normalized = normalizeEmail(email);
    const done = await store.transaction(async (tx): Promise<UserRecord | string> => {
      const user = await tx.findUserByEmail(normalized);
      if (!user) return 'not-found';
      if (!(await this.#d.totp.remove(user.id, tx))) return 'no-totp';
      await tx.putFactor({ userId: user.id, factor: 'totp', confirmedAt: null, mustEnroll: true, lastStep: 0, createdAt: now });
      await this.#d.audit.recordIn(tx, { action: 'admin.user.totp_remove', outcome: 'success', at: now, actor, userId: user.id, email: user.email });
      return user;
    });
    if (typeof done === 'string') {
      this.#d.audit.record({ action: 'admin.user.totp_remove', outcome: 'failure', actor, email: normalized, detail: { reason: done } });
      throw done === 'not-found' ? new ServiceError('not-found', `no operator ${normalized}`) : new ServiceError('conflict', `${normalized} has no authenticator`);
    }
    this.#d.alerts?.send('totp-removed', { id: done.id, email: done.email }, { by: 'admin' });
    return done;
  }

  /** Clock skew first (tries nothing, counts nothing), then the second-factor limits. */
  async #begin(flow: Flow, input: RecoveryBase): Promise<{ email: string; mac: string; admission: Admission }> {
    const email = normalizeEmail(input.email);
    const mac = normalizeMac(input.mac);
    this.#skew(flow, input.clientTime, email, input.seenIp, mac);
    const admission = await this.#admit(flow, 'passcode.auth', input.seenIp, email, mac);
    return { email, mac, admission };
  }

  #skew(action: AuditAction, clientTime: number | undefined, email: string, ip: string, mac: string): void {
    const { clock, config, throttle } = this.#d;
    try {
      checkClockSkew(clientTime, clock(), config.auth);
    } catch (err) {
      const detail = { reason: 'clock-skew', clientTime: clientTime ?? null, serverTime: clock() };
      this.#d.audit.record({ action, outcome: 'failure', email, ip, mac, detail }, `${action}:clock-skew:${throttle.group(ip)}`);
      throw err;
    }
  }

  async #admit(action: AuditAction, kind: 'passcode.request' | 'passcode.auth', ip: string, email: string, mac: string): Promise<Admission> {
    try {
      return await this.#d.throttle.admit(kind, ip, email);
    } catch (err) {
      if (err instanceof RateLimited) {
        this.#d.audit.record(
          { action, outcome: 'denied', email, ip, mac, detail: { reason: 'rate-limited', scope: err.scope } },
          `${action}:rate-limited:${err.scope}:${this.#d.throttle.group(ip)}`,
        );
      }
      throw err;
    }
  }

  /**
   * Verifies the password before the transaction (always one hash, a dummy for unknown accounts);
   * answers a check that holds only for the user whose hash was verified (a change meanwhile fails).
   */
  async #password(email: string, password: string, admission: Admission): Promise<(user: UserRecord) => boolean> {
    const { store, hasher } = this.#d;
    const before = await store.findUserByEmail(email);
    const ok = await hasher.verify(before?.passwordHash ?? hasher.dummyHash, password, { key: admission.group });
    return (user) => ok && before !== undefined && before.id === user.id && before.passwordHash === user.passwordHash;
  }

  /** Proves every factor in `has` but those in `except` with its proof; answers the failures. */
  async #proveOthers(
    userId: number,
    has: readonly string[],
    except: readonly string[],
    proofs: Readonly<Record<string, string | undefined>>,
    prepared: ReadonlyMap<string, unknown>,
    tx: Tx,
    now: number,
  ): Promise<string[]> {
    const failures: string[] = [];
    for (const name of has) {
      if (except.includes(name)) continue;
      const proof = proofs[name];
      const factor = this.#d.factors.get(name);
      const verdict = proof === undefined || !factor ? 'wrong' : await factor.verify(userId, proof, tx, now, prepared.get(name));
      if (verdict !== 'ok') failures.push(verdict === 'replay' ? `${name}-replay` : name);
    }
    return failures;
  }

  /**
   * `Factor.prepare` for each proof sent whose factor has one (face inference), before the
   * transaction so no lock waits for slow work; an unusable proof throws its own error here.
   */
  async #prepare(proofs: Readonly<Record<string, string | undefined>> | undefined): Promise<Map<string, unknown>> {
    const out = new Map<string, unknown>();
    for (const [name, proof] of Object.entries(proofs ?? {})) {
      const factor = this.#d.factors.get(name);
      if (proof !== undefined && factor?.prepare) out.set(name, await factor.prepare(proof));
    }
    return out;
  }

  /**
   * The frame of every flow, in one transaction: the account, its recovery passcode (bound to the
   * MAC that asked for it), then the flow's own checks. A failure counts against the passcode and
   * answers E_AUTH_FAILED; success consumes it.
   */
  async #run<T>(
    flow: Flow,
    input: RecoveryBase,
    email: string,
    mac: string,
    checks: (tx: Tx, user: UserRecord, now: number) => Promise<Outcome<T>>,
    admission: Admission,
    log: Logger,
  ): Promise<{ value: T; user: UserRecord }> {
    const { store, clock, keys, config, throttle } = this.#d;
    type Done = { ok: true; value: T; user: UserRecord; usedRecoveryCode: number | null } | { ok: false; reason: string; userId: number | null };
    const done = await store.transaction(async (tx): Promise<Done> => {
      const user = await tx.findUserByEmail(email);
      if (!user) return { ok: false, reason: 'unknown-account', userId: null };
      await tx.lockUser(user.id);
      const pending = await tx.getRecoveryPasscode(user.id);
      if (!pending) return { ok: false, reason: 'no-passcode', userId: user.id };
      const now = clock();
      const key = keys.get(pending.keyId);
      const failures: string[] = [];
      if (user.disabled) failures.push('disabled');
      if (!constantEquals(pending.mac, mac)) failures.push('mac');
      if (!key) failures.push('passcode-key-retired');
      else if (!constantEqualsBytes(hashPasscode(key.passcode, user.id, `recovery:${input.passcode}`), pending.hash)) failures.push('passcode');
      if (now >= pending.expiresAt) failures.push('passcode-expired');
      // The flow's factors are tried only behind a right passcode: a guess at the mailbox burns no
      // TOTP step or recovery code.
      const outcome = failures.length === 0 ? await checks(tx, user, now) : undefined;
      if (outcome && !outcome.ok) failures.push(outcome.reason);
      if (!outcome || !outcome.ok) {
        const attempts = pending.attempts + 1;
        if (now >= pending.expiresAt || attempts >= config.passcodes.maxAttempts) await tx.deleteRecoveryPasscode(user.id);
        else await tx.setRecoveryPasscodeAttempts(user.id, attempts);
        return { ok: false, reason: failures.join(','), userId: user.id };
      }
      await tx.deleteRecoveryPasscode(user.id);
      if (outcome.usedRecoveryCode !== null) {
        await this.#d.audit.recordIn(tx, {
          action: 'recovery_code.use',
          outcome: 'success',
          at: now,
          userId: user.id,
          email: user.email,
          ip: input.seenIp,
          mac,
          detail: { flow, remaining: outcome.usedRecoveryCode },
        });
      }
      return { ok: true, value: outcome.value, user, usedRecoveryCode: outcome.usedRecoveryCode };
    });
    if (!done.ok) {
      log.info({ event: flow, outcome: 'failure', reason: done.reason, email, mac }, 'recovery refused');
      this.#d.audit.record({ action: flow, outcome: 'failure', userId: done.userId, email, ip: input.seenIp, mac, detail: { reason: done.reason } });
      if (done.reason.includes('totp-replay')) {
        this.#d.audit.record({ action: 'totp.replay', outcome: 'failure', userId: done.userId, email, ip: input.seenIp, mac, detail: { flow } });
      }
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    await throttle.succeeded(admission).catch((err: unknown) =>
      log.warn({ event: flow, err: (err as Error).message }, 'recovery counters not released; they expire by themselves'),
    );
    log.info({ event: flow, outcome: 'success', userId: done.user.id, mac }, 'recovery completed');
    if (done.usedRecoveryCode !== null) {
      this.#d.alerts?.send('recovery-code-used', { id: done.user.id, email: done.user.email }, { ip: input.seenIp, mac, remaining: done.usedRecoveryCode });
    }
    return { value: done.value, user: done.user };
  }
}

function recoveryMail(to: string, passcode: string, expiresAt: number, ip: string, mac: string): MailMessage {
  return {
    to,
    subject: 'Your Hellwall recovery passcode',
    text: [
      `Your Hellwall recovery passcode is: ${passcode}`,
      '',
      `It expires at ${new Date(expiresAt).toISOString()} and can be used once, for account recovery only.`,
      `Requested from IP address ${ip}, device MAC ${mac}.`,
      '',
      'If you did not ask for it, someone is trying to recover your account: tell your administrator.',
    ].join('\n'),
  };
}
