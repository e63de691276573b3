import type { AuditSink } from '../audit/audit-log.js';
import type { Clock, Logger } from '../deps.js';
import type { MailQueue } from '../mail/mailer.js';
import type { Store } from '../store/store.js';
import { ServiceError } from '../errors.js';
import { passwordPolicyError, type PasswordHasher } from '../primitives/passwords.js';
import type { Caller } from './session-service.js';
import { RateLimited, type Throttle } from './throttle.js';
import type { TokenService } from './token-service.js';
import type { Alerts } from './alerts.js';

export interface AccountServiceDeps {
  readonly store: Store;
  readonly hasher: PasswordHasher;
  readonly clock: Clock;
  readonly tokens: TokenService;
  readonly throttle: Throttle;
  readonly mail: MailQueue;
  readonly audit: AuditSink;
  readonly alerts: Pick<Alerts, 'send'>;
}

/** What an operator does to their own account (ASVS V6.2.2–6.2.3). */
export class AccountService {
  readonly #d: AccountServiceDeps;

  constructor(deps: AccountServiceDeps) {
    this.#d = deps;
  }

  /**
   * [P-4.13] Changes the caller's own password: the session must authenticate, the current password
   * must be right (counted like any password attempt, so a stolen token cannot guess it at speed),
   * the new one must pass the policy. Every other session of the operator and the pending passcode
   * end; the caller's session goes on. The owner is told by mail. Answers how many sessions ended.
   */
  async changePassword(caller: Caller, current: string, next: string, log: Logger): Promise<number> {
    const { store, hasher, clock, throttle, audit } = this.#d;
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'password.change' }, log);
    const who = { userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac };
    let admission;
    try {
      admission = await throttle.admit('passcode.auth', caller.seenIp, s.userEmail);
    } catch (err) {
      if (err instanceof RateLimited) {
        audit.record({ action: 'password.change', outcome: 'denied', ...who, detail: { reason: 'rate-limited' } }, `password.change:rate-limited:${s.id}`);
      }
      throw err;
    }
    const user = await store.findUserById(s.userId);
    const right = await hasher.verify(user?.passwordHash ?? hasher.dummyHash, current, { key: admission.group });
    if (!user || !right) {
      audit.record({ action: 'password.change', outcome: 'failure', ...who, detail: { reason: 'wrong-password' } });
      log.info({ event: 'password.change', outcome: 'failure', userId: s.userId, sessionId: s.id }, 'password change refused: wrong current password');
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    const policy = passwordPolicyError(next, { email: user.email });
    if (policy) throw new ServiceError('invalid', policy);
    const passwordHash = await hasher.hash(next, { key: admission.group });
    const now = clock();
    const ended = await store.transaction(async (tx) => {
      // Only over the hash that was verified: an admin reset meanwhile wins, and this one fails.
      if (!(await tx.setPasswordHash(user.id, passwordHash, user.passwordHash))) return undefined;
      await tx.deletePasscode(user.id);
      let n = 0;
      for (const other of await tx.listOpenSessions(user.id)) {
        if (other.id !== s.id && (await tx.revokeSession(other.id, now, 'password-changed'))) n++;
      }
      await audit.recordIn(tx, { action: 'password.change', outcome: 'success', at: now, ...who, detail: { sessionsEnded: n } });
      return n;
    });
    if (ended === undefined) throw new ServiceError('conflict', 'the password was changed meanwhile; log in again');
    await throttle.succeeded(admission).catch(() => undefined);
    this.#d.alerts.send('password-changed', user, { at: now, ip: caller.seenIp, mac: s.mac, by: 'self' });
    log.info({ event: 'password.change', outcome: 'success', userId: s.userId, sessionId: s.id, sessionsEnded: ended }, 'password changed by its operator');
    return ended;
  }
}
