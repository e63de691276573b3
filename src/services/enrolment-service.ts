import type { AuditSink } from '../audit/audit-log.js';
import type { Clock, Logger } from '../deps.js';
import { ServiceError } from '../errors.js';
import type { SessionRecord, Store } from '../store/store.js';
import type { Factors } from './factors.js';
import type { Caller } from './session-service.js';
import { RateLimited, type Admission, type Throttle } from './throttle.js';
import type { TokenService } from './token-service.js';
import type { TotpFactor } from './totp-service.js';

export interface EnrolmentServiceDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly tokens: Pick<TokenService, 'authenticate'>;
  readonly throttle: Throttle;
  readonly audit: AuditSink;
  readonly factors: Factors;
}

/**
 * The wire side of enrolment, for every factor: authenticates the session (an enrolment-only one
 * included, for the enrolment commands), counts proofs with the other second-factor attempts
 * (Throttle.admit: the same limits as passcode guesses), and ends an enrolment-only session once
 * its factor is confirmed (the operator then logs in with it, proving every factor at once).
 */
export class EnrolmentService {
  readonly #d: EnrolmentServiceDeps;

  constructor(deps: EnrolmentServiceDeps) {
    this.#d = deps;
  }

  /** `<factor>.enroll`: starts (or restarts) an unconfirmed enrolment. */
  async start(caller: Caller, factorName: string, log: Logger): Promise<Record<string, unknown>> {
    const factor = this.#factor(factorName);
    const s = await this.#d.tokens.authenticate({ ...caller, command: `${factorName}.enroll` }, log);
    return factor.enrollStart({ userId: s.userId, email: s.userEmail }, ctxOf(s, caller, log));
  }

  /** `<factor>.confirm`: the first proof; the factor counts from now. */
  async confirm(caller: Caller, factorName: string, proof: string, log: Logger): Promise<Record<string, unknown> & { sessionEnded: boolean }> {
    const factor = this.#factor(factorName);
    const command = `${factorName}.confirm`;
    const s = await this.#d.tokens.authenticate({ ...caller, command }, log);
    const admission = await this.#admit(s, caller, 'totp.confirm');
    const result = await factor.enrollConfirm({ userId: s.userId, email: s.userEmail }, proof, ctxOf(s, caller, log));
    await this.#released(admission, log);
    let sessionEnded = false;
    if (s.scope !== 'full') sessionEnded = await this.#d.store.revokeSession(s.id, this.#d.clock(), 'enrolled');
    return { ...result, sessionEnded };
  }

  /**
   * recovery_codes.regenerate: a current TOTP code (consumed like a login's) proves the authenticator
   * is at hand; then new codes, the old ones void. Only a full session may.
   */
  async regenerateRecoveryCodes(caller: Caller, code: string, log: Logger): Promise<string[]> {
    const totp = this.#factor('totp') as TotpFactor;
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'recovery_codes.regenerate' }, log);
    const admission = await this.#admit(s, caller, 'recovery_codes.regenerate');
    const who = { userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac };
    const now = this.#d.clock();
    const outcome = await this.#d.store.transaction(async (tx) => {
      const verdict = await totp.verify(s.userId, code, tx, now);
      if (verdict !== 'ok') return { verdict, codes: [] as string[] };
      const codes = await totp.regenerateCodes(s.userId, tx, now);
      await this.#d.audit.recordIn(tx, { action: 'recovery_codes.regenerate', outcome: 'success', at: now, ...who, detail: { recoveryCodes: codes.length } });
      return { verdict, codes };
    });
    if (outcome.verdict !== 'ok') {
      if (outcome.verdict === 'replay') this.#d.audit.record({ action: 'totp.replay', outcome: 'failure', ...who, detail: { flow: 'recovery_codes.regenerate' } });
      this.#d.audit.record({ action: 'recovery_codes.regenerate', outcome: 'failure', ...who, detail: { reason: outcome.verdict } });
      throw new ServiceError('auth-failed', 'authentication failed');
    }
    await this.#released(admission, log);
    log.info({ event: 'recovery_codes.regenerate', outcome: 'success', userId: s.userId }, 'recovery codes regenerated');
    return outcome.codes;
  }

  #factor(name: string): NonNullable<ReturnType<Factors['get']>> {
    const factor = this.#d.factors.get(name);
    if (!factor) throw new ServiceError('invalid', `this server does not offer the ${name} factor`);
    return factor;
  }

  async #admit(s: SessionRecord, caller: Caller, action: 'totp.confirm' | 'recovery_codes.regenerate'): Promise<Admission> {
    try {
      return await this.#d.throttle.admit('passcode.auth', caller.seenIp, s.userEmail);
    } catch (err) {
      if (err instanceof RateLimited) {
        this.#d.audit.record(
          { action, outcome: 'denied', userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac, detail: { reason: 'rate-limited' } },
          `${action}:rate-limited:${s.id}`,
        );
      }
      throw err;
    }
  }

  async #released(admission: Admission, log: Logger): Promise<void> {
    await this.#d.throttle.succeeded(admission).catch((err: unknown) =>
      log.warn({ err: (err as Error).message }, 'second-factor counters not released; they expire by themselves'),
    );
  }
}

function ctxOf(s: SessionRecord, caller: Caller, log: Logger) {
  return { ip: caller.seenIp, mac: s.mac, sessionId: s.id, log };
}
