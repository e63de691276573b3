// Security alerts by email, through the mail queue, never delaying an answer.
//
// API (every service that has something to tell an operator):
//
//   alerts.send(name, { id, email }, facts)   // returns at once; never throws
//
//   name   one of ALERT_NAMES (src/mail/alert-mail.ts): 'new-device', 'password-changed',
//          'totp-enrolled', 'totp-removed', 'recovery-code-used', 'account-locked', 'session-reuse'
//   facts  plain values the template mentions, never a secret: `at` (ms; default now), `ip`,
//          `mac`, `device`; per alert: new-device `newDevice`, `newAddress` (booleans);
//          password-changed / totp-removed `by: 'self' | 'admin' | 'recovery'`;
//          recovery-code-used `remaining`; account-locked `until`; session-reuse `sessionId`.
//
//   e.g. alerts.send('totp-enrolled', { id: user.id, email: user.email }, { ip: seenIp, mac })
//
// The message is built and queued on a later turn of the event loop (MailQueue.later), after the
// current answer is written. Each alert can be switched off (`alerts.<name>: false`, or its name
// or `all` in `alerts.disabled`): then nothing is sent or audited. A sent alert is audited as
// `alert.<name>` (dashes as underscores) when delivery ends: success, or failure after the retries.

import type { AuditAction, AuditSink } from '../audit/audit-log.js';
import { ConfigError, type Config } from '../config.js';
import type { Clock, Logger } from '../deps.js';
import { ALERT_NAMES, alertMail, type AlertFacts, type AlertName } from '../mail/alert-mail.js';
import type { MailQueue } from '../mail/mailer.js';
import type { Store } from '../store/store.js';

export { ALERT_NAMES, type AlertFacts, type AlertName };

/** The operator an alert goes to. */
export interface AlertRecipient {
  readonly id: number;
  readonly email: string;
}

/** The audit action of each alert: one per alert, so `alert.*` or one name can be queried. */
const AUDIT_ACTION: Readonly<Record<AlertName, AuditAction>> = {
  'new-device': 'alert.new_device',
  'password-changed': 'alert.password_changed',
  'totp-enrolled': 'alert.totp_enrolled',
  'totp-removed': 'alert.totp_removed',
  'recovery-code-used': 'alert.recovery_code_used',
  'account-locked': 'alert.account_locked',
  'session-reuse': 'alert.session_reuse',
};

/** The boolean option of each alert under `alerts.`. */
const OPTION: Readonly<Record<AlertName, keyof Omit<Config['alerts'], 'disabled'>>> = {
  'new-device': 'newDevice',
  'password-changed': 'passwordChanged',
  'totp-enrolled': 'totpEnrolled',
  'totp-removed': 'totpRemoved',
  'recovery-code-used': 'recoveryCodeUsed',
  'account-locked': 'accountLocked',
  'session-reuse': 'sessionReuse',
};

export interface AlertsDeps {
  readonly config: Pick<Config, 'alerts'>;
  readonly mail: Pick<MailQueue, 'later' | 'enqueue'>;
  readonly audit: AuditSink;
  readonly clock: Clock;
  readonly log: Logger;
  /** Only to find the owner of an email a lockout names (the throttle counts emails as sent). */
  readonly store: Pick<Store, 'findUserByEmail'>;
}

/** Which alerts are on, from the config: an unknown name in `alerts.disabled` is a ConfigError. */
export function enabledAlerts(config: Config['alerts']): ReadonlySet<AlertName> {
  const listed = config.disabled
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const name of listed) {
    if (name !== 'all' && !(ALERT_NAMES as readonly string[]).includes(name)) {
      throw new ConfigError(`alerts.disabled: unknown alert "${name}" (known: ${ALERT_NAMES.join(', ')}, all)`);
    }
  }
  return new Set(ALERT_NAMES.filter((n) => config[OPTION[n]] && !listed.includes(n) && !listed.includes('all')));
}

export class Alerts {
  readonly #d: AlertsDeps;
  readonly #on: ReadonlySet<AlertName>;

  constructor(deps: AlertsDeps) {
    this.#d = deps;
    this.#on = enabledAlerts(deps.config.alerts);
  }

  enabled(name: AlertName): boolean {
    return this.#on.has(name);
  }

  /** Queues alert `name` to `user` after the current answer; see the top of this file. */
  send(name: AlertName, user: AlertRecipient, facts: AlertFacts = {}): void {
    if (!this.#on.has(name)) return;
    const at = typeof facts.at === 'number' ? facts.at : this.#d.clock();
    this.#d.mail.later(() => this.#enqueue(name, user, { ...facts, at }));
  }

  /**
   * The account lockout fired for `email` as sent (Throttle's `onLocked`): alerts its owner when
   * such an account exists; nothing otherwise (the lockout itself reveals nothing either).
   */
  accountLocked(email: string, until: number, ip: string): void {
    if (!this.#on.has('account-locked')) return;
    this.#d.mail.later(async () => {
      const user = await this.#d.store.findUserByEmail(email);
      if (user) this.#enqueue('account-locked', user, { at: this.#d.clock(), until, ip });
    });
  }

  #enqueue(name: AlertName, user: AlertRecipient, facts: AlertFacts): void {
    const { audit, log } = this.#d;
    const detail = Object.fromEntries(Object.entries(facts).filter((e): e is [string, string | number | boolean | null] => e[1] !== undefined && e[0] !== 'at'));
    this.#d.mail.enqueue(alertMail(name, user.email, facts), `alert.${name}`, (result) =>
      audit.record({
        action: AUDIT_ACTION[name],
        outcome: result.ok ? 'success' : 'failure',
        userId: user.id,
        email: user.email,
        ip: typeof facts.ip === 'string' ? facts.ip : null,
        mac: typeof facts.mac === 'string' ? facts.mac : null,
        detail: { ...detail, attempts: result.attempts, ...(result.error !== undefined && { error: result.error }) },
      }),
    );
    log.debug({ event: 'alert', alert: name, userId: user.id }, 'alert queued');
  }
}
