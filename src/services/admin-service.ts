import type { AuditAction, AuditInput, AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger } from '../deps.js';
import {
  AUDIT_OUTCOMES,
  DuplicateUserError,
  type AuditDetail,
  type AuditQuery,
  type AuditRecord,
  type SessionRecord,
  type Store,
  type StoreOps,
  type UserRecord,
} from '../store/store.js';
import { ServiceError } from '../errors.js';
import { normalizeEmail } from '../primitives/normalize.js';
import type { SessionCache } from './session-cache.js';
import { isActiveSession, liveBounds } from './session-rules.js';
import type { PasswordHasher } from '../primitives/passwords.js';
import type { Caller } from './session-service.js';
import { withKnownDevices, type SessionDevice } from './device-service.js';
import type { TokenService } from './token-service.js';
import type { Alerts } from './alerts.js';
import {
  addUser,
  deleteUser,
  disableUser,
  enableUser,
  requireUser,
  resetPassword,
  setUserRole,
  UserInputError,
} from './users.js';

/** The role that may use the admin commands on the wire. Built in: the policy cannot grant it away. */
export const ADMIN_ROLE = 'admin';

/** The audit action an admin command is recorded under (what `authorize` is asked for). */
export type AdminCommand = AuditAction;

/**
 * Who performs an administrative action. The CLI is trusted by its access to the data directory;
 * a wire caller is an operator whose token authenticated with role `admin`.
 */
export interface Actor {
  /** As recorded in the audit trail's `actor` column: `cli:<os user>` or `admin:<email>`. */
  readonly name: string;
  /** The administrator's account (wire callers only): some actions may not target it. */
  readonly userId?: number;
  readonly sessionId?: number;
  readonly ip?: string;
  readonly mac?: string;
  /**
   * Whether reads (lists, stats, audit queries) are audited too. On the wire they are: remote
   * access to operator data is worth a trace. The CLI's reads need access to the database anyway.
   */
  readonly auditReads: boolean;
}

/** A session as the admin views show it: the record, and its MAC among the known devices. */
export type AdminSessionRecord = SessionRecord & SessionDevice;

export interface Stats {
  activeSessions: number;
  activeUsers: number;
  /** Open (not revoked), of an enabled account, but past their limits: what housekeeping deletes. */
  expiredSessions: number;
  pendingPasscodes: number;
  sessionsPerUser: Record<string, number>;
}

/** Largest page of an audit query; a client pages on with `beforeId`. */
export const AUDIT_PAGE_MAX = 1000;
/** The page an audit query without `limit` gets. */
export const AUDIT_PAGE_DEFAULT = 100;

const ACTION_FILTER = /^[a-z_]+(\.[a-z_]+)*(\.\*|\*)?$/;

export interface AdminServiceDeps {
  readonly config: Pick<Config, 'tokens' | 'admin'>;
  readonly store: Store;
  readonly sessions: SessionCache;
  readonly hasher: PasswordHasher;
  readonly clock: Clock;
  readonly audit: AuditSink;
  readonly tokens: TokenService;
  /** The roles the policy in force declares (a user may be given any of them) [P-4.7]. */
  readonly roles: () => readonly string[];
  /** Mails the owner of a reset password (and the other alerts of admin actions). */
  readonly alerts?: Pick<Alerts, 'send'>;
}

/**
 * Every administrative operation, for the CLI and for the admin commands on the wire [P-4.12]
 * alike, so both check, change and audit the same way. Each mutation is audited with its outcome,
 * in the transaction that makes the change; one refused (unknown user, invalid input, conflict)
 * changes nothing and is audited as a failure.
 */
export class AdminService {
  readonly #d: AdminServiceDeps;

  constructor(deps: AdminServiceDeps) {
    this.#d = deps;
  }

  /**
   * [P-4.12] The actor behind an admin command on the wire: the token must authenticate [P-3.6]
   * (else unauthenticated) and its operator must have role `admin` (else forbidden, audited).
   */
  async authorize(caller: Caller, command: AuditAction, log: Logger): Promise<Actor> {
    const s = await this.#d.tokens.authenticate({ ...caller, command }, log);
    const actor: Actor = { name: `admin:${s.userEmail}`, userId: s.userId, sessionId: s.id, ip: caller.seenIp, mac: s.mac, auditReads: true };
    if (s.userRole !== ADMIN_ROLE) {
      // About the caller themself: their refused attempts show in a query by their email.
      this.#record(actor, command, 'denied', { user: { id: s.userId, email: s.userEmail }, detail: { reason: 'not-admin', role: s.userRole } }, `${command}:not-admin:${s.id}`);
      log.info({ event: command, outcome: 'denied', reason: 'not-admin', userId: s.userId, sessionId: s.id, role: s.userRole }, 'admin command refused: not an administrator');
      throw new ServiceError('forbidden', 'this command needs the admin role');
    }
    return actor;
  }

  async addUser(actor: Actor, input: { email: string; phone: string; role: string; password: string }): Promise<UserRecord> {
    const { store, hasher, clock } = this.#d;
    const email = normalizeEmail(input.email);
    return this.#audited(actor, 'admin.user.add', { email }, () =>
      addUser({ store, hasher, clock, roles: this.#d.roles() }, input, async (tx, user) => {
        await this.#stillAdmin(tx, actor, 'recent-login');
        await this.#recordIn(tx, actor, 'admin.user.add', { user, detail: { role: user.role } });
      }),
    );
  }

  async listUsers(actor: Actor): Promise<UserRecord[]> {
    const users = await this.#d.store.listUsers();
    this.#read(actor, 'admin.user.list', { detail: { count: users.length } });
    return users;
  }

  showUser(actor: Actor, email: string): Promise<{ user: UserRecord; activeSessions: number }> {
    return this.#audited(actor, 'admin.user.show', { email }, async () => {
      const user = await requireUser(this.#d.store, email);
      const activeSessions = this.#active(await this.#d.store.listOpenSessions(user.id)).length;
      this.#read(actor, 'admin.user.show', { user });
      return { user, activeSessions };
    });
  }

  disableUser(actor: Actor, email: string): Promise<{ user: UserRecord; sessionsEnded: number }> {
    return this.#changed(actor, 'admin.user.disable', email, async (tx, target) => {
      this.#notSelf(actor, target, 'disable');
      const { user, sessionsRevoked } = await disableUser(tx, this.#d.clock(), target);
      return { result: { user, sessionsEnded: sessionsRevoked }, detail: { sessionsEnded: sessionsRevoked } };
    });
  }

  enableUser(actor: Actor, email: string): Promise<UserRecord> {
    return this.#changed(actor, 'admin.user.enable', email, async (tx, target) => ({ result: await enableUser(tx, target) }));
  }

  setRole(actor: Actor, email: string, role: string): Promise<UserRecord> {
    return this.#changed(actor, 'admin.user.set_role', email, 'recent-login', async (tx, target) => {
      if (role !== ADMIN_ROLE) this.#notSelf(actor, target, 'demote');
      const user = await setUserRole(tx, this.#d.roles(), target, role);
      return { result: user, detail: { from: target.role, to: role } };
    });
  }

  resetPassword(actor: Actor, email: string, password: string): Promise<{ user: UserRecord; sessionsEnded: number }> {
    const { store, hasher, clock } = this.#d;
    return this.#audited(actor, 'admin.user.reset_password', { email: normalizeEmail(email) }, async () => {
      const { user, sessionsRevoked } = await resetPassword({ store, hasher, clock }, email, password, async (tx, target, n) => {
        await this.#stillAdmin(tx, actor, 'recent-login');
        await this.#recordIn(tx, actor, 'admin.user.reset_password', { user: target, detail: { sessionsEnded: n } });
      });
      this.#d.alerts?.send('password-changed', user, { by: 'admin' });
      return { user, sessionsEnded: sessionsRevoked };
    });
  }

  deleteUser(actor: Actor, email: string): Promise<UserRecord> {
    return this.#changed(actor, 'admin.user.delete', email, async (tx, target) => {
      this.#notSelf(actor, target, 'delete');
      return { result: await deleteUser(tx, target), detail: { role: target.role } };
    });
  }

  /**
   * Active sessions (isActiveSession) of every operator, or of one; oldest first; each with its
   * MAC's name and registration among its operator's known devices, as session.list shows them.
   */
  listSessions(actor: Actor, email?: string): Promise<AdminSessionRecord[]> {
    return this.#audited(actor, 'admin.session.list', { email: email === undefined ? null : normalizeEmail(email) }, async () => {
      const { store } = this.#d;
      const user = email === undefined ? undefined : await requireUser(store, email);
      const sessions = await withKnownDevices(store, this.#active(user ? await store.listOpenSessions(user.id) : await store.listAllOpenSessions()));
      this.#read(actor, 'admin.session.list', { ...(user && { user }), detail: { count: sessions.length } });
      return sessions;
    });
  }

  /**
   * Ends one session (reason `admin-revoked`); one already ended is a conflict [P-4.12]. Answers
   * the session as it was, with its known device as listSessions shows it.
   */
  revokeSession(actor: Actor, sessionId: number): Promise<AdminSessionRecord> {
    return this.#audited(actor, 'admin.session.revoke', { detail: { target: sessionId } }, async () => {
      const { store, clock } = this.#d;
      const now = clock();
      const session = await store.transaction(async (tx) => {
        const found = Number.isSafeInteger(sessionId) && sessionId > 0 ? await tx.findSessionById(sessionId) : undefined;
        if (!found) throw new UserInputError(`no session with id ${sessionId}`, 'not-found');
        if (found.revokedAt !== null) throw new UserInputError(`session ${sessionId} had already ended (${found.revokeReason ?? 'revoked'})`, 'conflict');
        await this.#stillAdmin(tx, actor);
        await tx.revokeSession(found.id, now, 'admin-revoked');
        await this.#recordIn(tx, actor, 'admin.session.revoke', {
          user: { id: found.userId, email: found.userEmail },
          detail: { target: found.id, targetMac: found.mac, targetIp: found.ip },
        });
        const [shown] = await withKnownDevices(tx, [found]);
        return shown!;
      });
      this.#d.sessions.forget(session.id);
      return session;
    });
  }

  /** Ends every open session of an operator; answers how many of them were active. */
  revokeUserSessions(actor: Actor, email: string): Promise<{ user: UserRecord; ended: number }> {
    return this.#changed(actor, 'admin.session.revoke_user', email, async (tx, user) => {
      const ended = this.#active(await tx.listOpenSessions(user.id)).length;
      await tx.revokeUserSessions(user.id, this.#d.clock(), 'admin-revoked');
      return { result: { user, ended }, detail: { ended } };
    });
  }

  async stats(actor: Actor): Promise<Stats> {
    const { store, clock } = this.#d;
    // Counted by the database (off the event loop on SQLite), never loaded: a million sessions
    // would hold every token check for seconds.
    const counts = await store.sessionCounts(liveBounds(clock(), this.#d.config.tokens.idleSeconds * 1000));
    const sessionsPerUser = Object.fromEntries(counts.activeByUser);
    let activeSessions = 0;
    for (const n of counts.activeByUser.values()) activeSessions += n;
    const stats: Stats = {
      activeSessions,
      activeUsers: counts.activeByUser.size,
      expiredSessions: counts.inactive,
      pendingPasscodes: await store.countPendingPasscodes(clock()),
      sessionsPerUser,
    };
    this.#read(actor, 'admin.stats', {});
    return stats;
  }

  /** Audit rows, newest first; the query is checked here (invalid) so the CLI and wire agree. */
  queryAudit(actor: Actor, query: Partial<AuditQuery>): Promise<AuditRecord[]> {
    const detail = Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined)) as AuditDetail;
    return this.#audited(actor, 'admin.audit.query', { detail }, async () => {
      const q = checkAuditQuery(query);
      const rows = await this.#d.store.queryAudit(q);
      this.#read(actor, 'admin.audit.query', { detail: { ...detail, rows: rows.length } });
      return rows;
    });
  }

  #active(sessions: SessionRecord[]): SessionRecord[] {
    const now = this.#d.clock();
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    return sessions.filter((s) => isActiveSession(s, now, idleMs));
  }

  // Over the wire an administrator must not lock themselves out by accident; the CLI (with access
  // to the data directory) can always repair an account, so it is not held to this.
  #notSelf(actor: Actor, target: UserRecord, what: string): void {
    if (actor.userId === target.id) throw new UserInputError(`an administrator cannot ${what} their own account over the wire`, 'conflict');
  }

  /**
   * Inside the transaction that commits an admin change made over the wire: the actor's session is
   * still live and their account still an enabled administrator. A command sent before the admin
   * was demoted or their session revoked, and still running (a password hash takes a while), must
   * not commit after (the row lock holds the answer until commit). The CLI has no session.
   */
  async #stillAdmin(tx: StoreOps, actor: Actor, fresh?: 'recent-login'): Promise<void> {
    if (actor.sessionId === undefined) return;
    const s = await tx.findSessionById(actor.sessionId);
    const now = this.#d.clock();
    if (!s || s.revokedAt !== null || s.userDisabled || now >= s.expiresAt) throw new ServiceError('unauthenticated', 'not authenticated');
    if (s.userRole !== ADMIN_ROLE) throw new ServiceError('forbidden', 'this command needs the admin role');
    // Creating accounts, changing roles and credentials want proof that the administrator is at the
    // keyboard now, not a token that has been renewing for hours (ASVS 6.2.2, 7.5.1). A renewal does
    // not count: only a login (passcode.auth) does.
    if (fresh && now - s.createdAt > this.#d.config.admin.reauthSeconds * 1000) {
      throw new ReauthRequired(this.#d.config.admin.reauthSeconds);
    }
  }

  /** A change to one existing operator, made and audited in one transaction. */
  #changed<T>(
    actor: Actor,
    action: AuditAction,
    email: string,
    ...args:
      | [change: (tx: StoreOps, target: UserRecord) => Promise<{ result: T; detail?: AuditDetail }>]
      | [fresh: 'recent-login', change: (tx: StoreOps, target: UserRecord) => Promise<{ result: T; detail?: AuditDetail }>]
  ): Promise<T> {
    const [fresh, change] = args.length === 2 ? args : [undefined, args[0]];
    return this.#audited(actor, action, { email: normalizeEmail(email) }, () =>
      this.#d.store.transaction(async (tx) => {
        const target = await requireUser(tx, email);
        await this.#stillAdmin(tx, actor, fresh);
        const { result, detail } = await change(tx, target);
        await this.#recordIn(tx, actor, action, { user: target, ...(detail && { detail }) });
        return result;
      }),
    );
  }

  /**
   * Runs `fn`; when it refuses (unknown user, invalid input, conflict), records the failure (after
   * the rollback, so the row survives it) and rethrows for the caller to answer.
   */
  async #audited<T>(actor: Actor, action: AuditAction, target: { email?: string | null; detail?: AuditDetail }, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ReauthRequired) {
        this.#record(actor, action, 'denied', { user: target.email ? { email: target.email } : undefined, detail: { ...target.detail, reason: 'reauth-required' } });
      } else if (err instanceof UserInputError || err instanceof DuplicateUserError) {
        const kind = err instanceof DuplicateUserError ? 'conflict' : err.kind;
        this.#record(actor, action, 'failure', {
          user: target.email ? { email: target.email } : undefined,
          detail: { ...target.detail, reason: kind, message: err.message },
        });
      }
      throw err;
    }
  }

  #read(actor: Actor, action: AuditAction, fields: { user?: Pick<UserRecord, 'id' | 'email'>; detail?: AuditDetail }): void {
    if (actor.auditReads) this.#record(actor, action, 'success', fields);
  }

  #recordIn(tx: StoreOps, actor: Actor, action: AuditAction, fields: { user?: { id?: number; email: string } | undefined; detail?: AuditDetail }): Promise<void> {
    return this.#d.audit.recordIn(tx, this.#event(actor, action, 'success', fields));
  }

  #record(
    actor: Actor,
    action: AuditAction,
    outcome: (typeof AUDIT_OUTCOMES)[number],
    fields: { user?: { id?: number; email: string } | undefined; detail?: AuditDetail },
    coalesce?: string,
  ): void {
    this.#d.audit.record(this.#event(actor, action, outcome, fields), coalesce);
  }

  #event(
    actor: Actor,
    action: AuditAction,
    outcome: (typeof AUDIT_OUTCOMES)[number],
    fields: { user?: { id?: number; email: string } | undefined; detail?: AuditDetail },
  ): AuditInput {
    return {
      action,
      outcome,
      actor: actor.name,
      userId: fields.user?.id ?? null,
      email: fields.user?.email ?? null,
      ip: actor.ip ?? null,
      mac: actor.mac ?? null,
      sessionId: actor.sessionId ?? null,
      detail: fields.detail ?? null,
    };
  }
}

/** An admin command that needs a recent login, from a session whose login is older. */
export class ReauthRequired extends ServiceError {
  override name = 'ReauthRequired';
  constructor(seconds: number) {
    super('forbidden', `log in again: this command needs a login within the last ${Math.round(seconds / 60)} minutes`);
  }
}

/** Checks and completes an audit query: a known outcome, a well-formed action, a sane range and page. */
export function checkAuditQuery(q: Partial<AuditQuery>): AuditQuery {
  if (q.outcome !== undefined && !AUDIT_OUTCOMES.includes(q.outcome)) {
    throw new UserInputError(`outcome must be one of ${AUDIT_OUTCOMES.join(', ')}`);
  }
  if (q.action !== undefined && !ACTION_FILTER.test(q.action)) {
    throw new UserInputError('action must be an action name (e.g. login) or a prefix ending in * (e.g. admin.*)');
  }
  if (q.since !== undefined && q.until !== undefined && q.since >= q.until) throw new UserInputError('since must be before until');
  const limit = q.limit ?? AUDIT_PAGE_DEFAULT;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > AUDIT_PAGE_MAX) throw new UserInputError(`limit must be 1 to ${AUDIT_PAGE_MAX}`);
  return {
    ...(q.email !== undefined && { email: normalizeEmail(q.email) }),
    ...(q.action !== undefined && { action: q.action }),
    ...(q.actor !== undefined && { actor: q.actor }),
    ...(q.outcome !== undefined && { outcome: q.outcome }),
    ...(q.since !== undefined && { since: q.since }),
    ...(q.until !== undefined && { until: q.until }),
    ...(q.beforeId !== undefined && { beforeId: q.beforeId }),
    limit,
  };
}
