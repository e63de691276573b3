import type { Clock, Logger } from '../deps.js';
import type { Metrics } from '../ops/metrics.js';
import { StoreBusyError, StoreUnavailableError, type AuditDetail, type AuditEvent, type Store, type Tx } from '../store/store.js';

/**
 * Every action the audit trail records, with what its outcomes mean. README's "Audit trail" table
 * is checked against this list, so an action cannot be recorded without being documented.
 */
export const AUDIT_ACTIONS = {
  'passcode.request': 'passcode.request: success = right password, a passcode is issued; failure = wrong password, unknown or disabled account (detail.reason); denied = rate limit',
  'passcode.sent': 'the passcode mail: success = the mail server accepted it; failure = every attempt failed',
  login: 'passcode.auth: success = a session opened (sessionId); failure = any factor wrong (detail.reason lists which); denied = rate limit',
  'token.renew': 'token.check answered renew: the session rotated to a new token',
  'token.reuse': 'a rotated-out token came back after the grace: the session is revoked (failure)',
  'token.denied': 'token.check with a live token whose role the policy does not allow that request (denied; detail.request, detail.role)',
  'session.logout': 'session.logout ended the caller\'s session',
  'session.revoke': 'session.revoke: success = the operator ended one of their other sessions (detail.target); failure = no such active session; denied = a session of another operator',
  'session.logout_all': 'session.logout_all ended every session of the operator (detail.ended)',
  'session.evict': 'a login beyond sessions.maxPerUser ended the oldest session (detail.by = the new session)',
  'password.change': 'password.change: success = the operator changed their own password (detail.sessionsEnded: their other sessions); failure = wrong current password; denied = rate limit',
  'admin.user.add': 'an administrator added an operator',
  'admin.user.list': 'an administrator listed operators (on the wire)',
  'admin.user.show': 'an administrator looked at one operator (on the wire)',
  'admin.user.disable': 'an administrator disabled an account (detail.sessionsEnded)',
  'admin.user.enable': 'an administrator enabled an account',
  'admin.user.set_role': 'an administrator changed a role (detail.from, detail.to)',
  'admin.user.reset_password': 'an administrator set a new password (detail.sessionsEnded); never the password',
  'admin.user.delete': 'an administrator deleted an operator',
  'admin.session.list': 'an administrator listed sessions (on the wire)',
  'admin.session.revoke': 'an administrator ended one session',
  'admin.session.revoke_user': 'an administrator ended every session of an operator (detail.ended)',
  'admin.stats': 'an administrator read the statistics (on the wire)',
  'admin.audit.query': 'an administrator queried the audit trail (on the wire)',
  'admin.key.rotate': 'an administrator made a new server key current (detail.keyId)',
  'admin.key.retire': 'an administrator retired a server key (detail.keyId, detail.sessionsEnded)',
  'audit.suppressed': 'refusals beyond the budget of 1,000 a minute were counted, not written one by one (detail.suppressed, detail.since)',
  'device.rename': 'device.rename: the operator named one of their known devices (detail.device); failure = no such device',
  'admin.user.devices': 'an administrator listed an operator\'s known devices (on the wire)',
  'admin.device.register': 'an administrator registered a device (MAC) for an operator (detail.device, detail.name)',
  'admin.device.remove': 'an administrator removed a device of an operator (detail.device, detail.sessionsEnded: its sessions)',
  'alert.new_device': 'the new-device alert mail (a login from a MAC or address group not seen before for the operator): success = accepted by the mail server; failure = every attempt failed',
  'alert.password_changed': 'the password-changed alert mail (success = accepted by the mail server; failure = every attempt failed)',
  'alert.totp_enrolled': 'the authenticator-enrolled alert mail (success / failure as above)',
  'alert.totp_removed': 'the authenticator-removed alert mail (success / failure as above)',
  'alert.recovery_code_used': 'the recovery-code-used alert mail (success / failure as above)',
  'alert.account_locked': 'the account-locked alert mail, sent when the lockout fires for an existing account (success / failure as above)',
  'alert.session_reuse': 'the alert mail sent when reuse of a rotated-out token ended a session (success / failure as above)',
  'admin.console.login': 'the admin console opened a session (success; actor console:<email>); denied = the login succeeded but the role is not admin (that session is ended at once)',
  'admin.cleanup': 'an administrator ran housekeeping now from the console (detail: rows deleted by table)',
  'totp.enroll': 'totp.enroll started an enrolment (success; the secret is never recorded); denied = a confirmed authenticator exists',
  'totp.confirm': 'totp.confirm: success = the authenticator counts from now (detail.recoveryCodes issued); failure = wrong code; denied = rate limit',
  'totp.replay': 'a TOTP code was presented again in a time step already used (refused; detail.flow)',
  'recovery_codes.regenerate': 'recovery_codes.regenerate: success = new recovery codes, the old ones void; failure = wrong code; denied = rate limit',
  'recovery.request': 'recovery.request: success = a recovery passcode is issued; failure = unknown or disabled account (detail.reason); denied = rate limit or passcodes per hour',
  'recovery.password': 'recovery.password (forgotten password): success = new password, every session ended (detail.with: totp or recovery-code); failure = any factor wrong (detail.reason); denied = rate limit',
  'recovery.totp': 'recovery.totp (lost authenticator): success = the authenticator removed, re-enrolment required, every session ended; failure = any factor wrong; denied = rate limit',
  'recovery.device': 'recovery.device (new device): success = the device (MAC) registered, the old device\'s sessions ended; failure = any factor wrong; denied = rate limit',
  'recovery_code.use': 'a recovery code was used (success; detail.flow, detail.remaining)',
  'admin.user.totp_remove': 'an administrator removed an operator\'s authenticator (re-enrolment required at the next login); failure = no such operator or no authenticator',
  'face.enroll': 'face.enroll stored a pending face template (success; the template is never recorded); denied = a confirmed face exists',
  'face.confirm': 'face.confirm: success = the face factor counts from now; failure = the second image did not match the first',
  'face.remove': 'face.remove: success = the face factor and its template deleted; failure = the image did not match',
} as const;

export type AuditAction = keyof typeof AUDIT_ACTIONS;

/** What a caller gives: `at` defaults to the clock, `action` must be a registered one. */
export type AuditInput = Omit<AuditEvent, 'at' | 'action'> & { readonly action: AuditAction; readonly at?: number };

// A detail value is a short fact; anything longer is cut so one event cannot bloat the table.
const DETAIL_VALUE_MAX = 200;

// Events waiting for a group commit beyond this many are dropped, oldest first, and counted: the
// trail must never hold unbounded memory while the database refuses writes.
const PENDING_MAX = 10_000;
const RETRY_MS = 200;
// Events per group commit: about 7 ms of inserting here; more wait for the next turn, so a backlog
// never holds the event loop (and token checks) for long.
const FLUSH_MAX = 1000;

// Repeats of one refusal (same key) within this window are counted, not written one by one.
const COALESCE_MS = 60_000;
// Refusal rows (failure or denied outcomes recorded outside a change's transaction) a minute, past
// which they are counted, not written or logged one by one.
const REFUSALS_PER_MINUTE = 1000;
// Keys remembered for coalescing; beyond it the oldest are forgotten (their next repeat is written).
const COALESCE_KEYS_MAX = 10_000;

export interface AuditSink {
  /**
   * Records `event`. With `coalesce`, a key naming a refusal a client can repeat at will (a rate
   * limit, a policy denial): only the first of each minute per key is written, and the next one
   * written for the key carries `detail.repeated`, how many were left out in between.
   */
  record(event: AuditInput, coalesce?: string): void;
  /**
   * Records `event` inside the transaction `tx` of the change it is about: the two commit, or roll
   * back, together.
   */
  recordIn(tx: Tx, event: AuditInput): Promise<void>;
}

/** For code paths built without an audit trail (unit tests of one service). */
export const NO_AUDIT: AuditSink = { record() {}, recordIn: async () => {} };

/**
 * The audit trail's writer. An event that accompanies a state change is recorded inside that
 * change's transaction, so the two commit (or roll back) together and a crash cannot keep one
 * without the other. Events with no write of their own (a failed login, a denied request) are
 * group-committed: queued, then written in one transaction on the next turn of the event loop,
 * after the answer. So a flood of refusals costs one fsync per turn, not one per refusal, and a
 * refusal's answer is never delayed by a disk write.
 */
export class AuditLog implements AuditSink {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #metrics: Pick<Metrics, 'audit'>;
  #pending: AuditEvent[] = [];
  /** Coalesced keys: when the last row for each was written, and the repeats left out since. */
  readonly #recent = new Map<string, { at: number; repeated: number }>();
  #scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  #draining: Promise<void> | undefined;
  #budget = { start: 0, used: 0, suppressed: 0 };
  #summaryTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(deps: { store: Store; clock: Clock; log: Logger; metrics: Pick<Metrics, 'audit'> }) {
    this.#store = deps.store;
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#metrics = deps.metrics;
  }

  record(input: AuditInput, coalesce?: string): void {
    let event: AuditEvent = { ...input, at: input.at ?? this.#clock(), detail: clip(input.detail) };
    if (coalesce !== undefined) {
      // An abusive client must not turn each cheap refusal into a row (and a log line): a flood
      // would otherwise fill the disk. One row per key per minute, counting the rest.
      const seen = this.#recent.get(coalesce);
      if (seen && event.at - seen.at < COALESCE_MS) {
        seen.repeated++;
        this.#metrics.audit('coalesced', 1);
        return;
      }
      this.#recent.delete(coalesce);
      this.#recent.set(coalesce, { at: event.at, repeated: 0 });
      if (this.#recent.size > COALESCE_KEYS_MAX) this.#recent.delete(this.#recent.keys().next().value as string);
      if (seen && seen.repeated > 0) event = { ...event, detail: { ...event.detail, repeated: seen.repeated } };
    }
    // What would be written: within the minute's budget, or counted.
    if (event.outcome !== 'success' && this.#overBudget(event.at)) return;
    // The same event as one uniform log line: the copy to ship off the host (a SIEM), which
    // whoever controls the database cannot rewrite.
    this.#log.info({ event: 'audit', audit: event }, 'audit');
    if (this.#closed) {
      // After close (the CLI's last act, a late mail callback): write at once or not at all, and a
      // refusal by the database is a loss, counted as one.
      void this.#write([event]).then((written) => {
        if (written) return;
        this.#metrics.audit('dropped', 1);
        this.#log.error({ event: 'audit', dropped: 1 }, 'audit event lost after shutdown: the database refused it');
      });
      return;
    }
    this.#pending.push(event);
    if (this.#pending.length > PENDING_MAX) {
      const dropped = this.#pending.splice(0, this.#pending.length - PENDING_MAX);
      this.#metrics.audit('dropped', dropped.length);
      this.#log.error({ event: 'audit', dropped: dropped.length }, 'audit events dropped: the database has refused writes for too long');
    }
    this.#scheduled ??= setImmediate(() => void this.#drain(false));
  }

  /**
   * The global budget of refusal rows (and their log lines) a minute: whatever mix of clients,
   * keys and nodes' worth of traffic, this node writes at most REFUSALS_PER_MINUTE a minute plus
   * one `audit.suppressed` row counting the rest (SECURITY.md: the most an anonymous client can make
   * the service write).
   */
  #overBudget(at: number): boolean {
    const w = this.#budget;
    if (at - w.start >= COALESCE_MS) {
      this.#summarize(at);
      this.#budget = { start: at, used: 0, suppressed: 0 };
      return this.#overBudget(at);
    }
    if (w.used >= REFUSALS_PER_MINUTE) {
      // The count is written when the minute ends (a timer, should no refusal come after it) or
      // at close, whichever is first: a flood that stops still leaves its row.
      if (w.suppressed++ === 0) this.#summaryTimer = setTimeout(() => this.#summarize(this.#clock()), COALESCE_MS - (at - w.start)).unref();
      this.#metrics.audit('suppressed', 1);
      return true;
    }
    w.used++;
    return false;
  }

  /** Writes the `audit.suppressed` row for the budget's minute, once, if it suppressed anything. */
  #summarize(at: number): void {
    clearTimeout(this.#summaryTimer);
    this.#summaryTimer = undefined;
    const { suppressed, start: since } = this.#budget;
    if (suppressed === 0) return;
    this.#budget.suppressed = 0;
    this.record({ action: 'audit.suppressed', outcome: 'success', at, detail: { suppressed, since } });
  }


  async recordIn(tx: Tx, input: AuditInput): Promise<void> {
    const event: AuditEvent = { ...input, at: input.at ?? this.#clock(), detail: clip(input.detail) };
    await tx.appendAudit([event]);
    // Logged once the append has joined the transaction; a rollback after this leaves a log line
    // for an event that did not happen, which the log's reader can tell by the missing change.
    this.#log.info({ event: 'audit', audit: event }, 'audit');
    this.#metrics.audit('written', 1);
  }

  /** Writes everything queued now (tests, shutdown); what a busy database refuses stays queued. */
  flush(): Promise<void> {
    return this.#drain(true);
  }

  /**
   * Writes what is queued, `FLUSH_MAX` per transaction with a turn of the event loop between them
   * unless `all`; on a busy database, keeps it and retries shortly.
   */
  async #drain(all: boolean): Promise<void> {
    clearTimeout(this.#scheduled as NodeJS.Timeout);
    clearImmediate(this.#scheduled as NodeJS.Immediate);
    this.#scheduled = undefined;
    // One drain at a time: a second waits for the first, then writes what is left.
    while (this.#draining) await this.#draining;
    let done!: () => void;
    this.#draining = new Promise<void>((resolve) => (done = resolve));
    try {
      await this.#drainNow(all);
    } finally {
      this.#draining = undefined;
      done();
    }
  }

  async #drainNow(all: boolean): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0, FLUSH_MAX);
      if (!(await this.#write(batch))) {
        this.#pending = batch.concat(this.#pending);
        if (!this.#closed) this.#scheduled = setTimeout(() => void this.#drain(false), RETRY_MS).unref();
        return;
      }
      if (!all && this.#pending.length > 0) {
        this.#scheduled = setImmediate(() => void this.#drain(false));
        return;
      }
    }
  }

  /** Flushes and stops queueing (shutdown); what the database still refuses is logged as lost. */
  async close(): Promise<void> {
    this.#summarize(this.#clock());
    this.#closed = true;
    await this.flush();
    if (this.#pending.length > 0) {
      this.#metrics.audit('dropped', this.#pending.length);
      this.#log.error({ event: 'audit', dropped: this.#pending.length }, 'audit events lost at shutdown: the database refused writes');
      this.#pending = [];
    }
  }

  async #write(events: AuditEvent[]): Promise<boolean> {
    try {
      await this.#store.appendAudit(events);
      this.#metrics.audit('written', events.length);
      return true;
    } catch (err) {
      if (err instanceof StoreBusyError || err instanceof StoreUnavailableError) {
        // Postponed while running; after close nothing retries, and the caller counts the loss.
        if (!this.#closed) this.#log.warn({ event: 'audit', pending: events.length, err: (err as Error).message }, 'audit write postponed: database busy or unreachable');
        return false;
      }
      // Not retryable (closed database, disk full): say so loudly; the service keeps answering.
      this.#metrics.audit('dropped', events.length);
      this.#log.error({ event: 'audit', dropped: events.length, err: (err as Error).message }, 'audit events could not be written');
      return true;
    }
  }
}

function clip(detail: AuditDetail | null | undefined): AuditDetail | null {
  if (!detail) return null;
  const out: Record<string, string | number | boolean | null> = {};
  for (const [k, v] of Object.entries(detail)) {
    if (v === undefined) continue;
    out[k] = typeof v === 'string' && v.length > DETAIL_VALUE_MAX ? `${v.slice(0, DETAIL_VALUE_MAX - 1)}…` : v;
  }
  return out;
}
