import type { AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import { ProtocolError } from '../protocol/errors.js';
import type { Clock, Logger } from '../deps.js';
import { isActiveSession, type SessionRecord, type Store } from '../store/store.js';
import type { SessionListEntry } from '../protocol/messages.gen.js';
import type { TokenService } from './token-service.js';

/** What an operator may see of one of their sessions (never a master token): the schema's type. */
export type SessionView = SessionListEntry;

export interface Caller {
  readonly token: string;
  readonly mac: string;
  readonly seenIp: string;
}

/**
 * The session commands [P-4.8]–[P-4.10]: each first authenticates the caller's token like a token
 * check would [P-3.6], then acts on that session or on its operator's sessions.
 */
export interface SessionServiceDeps {
  readonly config: Config;
  readonly store: Store;
  readonly clock: Clock;
  readonly tokens: TokenService;
  readonly audit: AuditSink;
}

export class SessionService {
  readonly #d: SessionServiceDeps;

  constructor(deps: SessionServiceDeps) {
    this.#d = deps;
  }

  /** [P-4.8] Ends the caller's session. */
  logout(caller: Caller, log: Logger): void {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.logout' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    store.transaction(() => {
      store.revokeSession(s.id, now, 'logout');
      audit.record({ action: 'session.logout', outcome: 'success', at: now, ...audited(s, caller) });
    });
    log.info({ event: 'session.logout', userId: s.userId, sessionId: s.id }, 'session ended by logout');
  }

  /**
   * [P-4.11] Ends one other session of the caller's own operator (a lost device, seen in
   * session.list). A session of another operator, or none, is E_NOT_FOUND: which is not said.
   */
  revoke(caller: Caller, sessionId: number, log: Logger): void {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.revoke' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    const target = store.findSessionById(sessionId);
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    if (!target || target.userId !== s.userId || !isActiveSession(target, now, idleMs)) {
      const reason = !target ? 'no-such-session' : target.userId !== s.userId ? 'another-operator' : 'not-active';
      audit.record(
        { action: 'session.revoke', outcome: reason === 'another-operator' ? 'denied' : 'failure', at: now, ...audited(s, caller), detail: { target: sessionId, reason } },
        `session.revoke:${s.id}:${reason}`,
      );
      log.info({ event: 'session.revoke', outcome: 'refused', reason, userId: s.userId, sessionId: s.id, target: sessionId }, 'session revoke refused');
      throw new ProtocolError('E_NOT_FOUND', 'no such active session of yours');
    }
    store.transaction(() => {
      store.revokeSession(target.id, now, 'revoked-by-owner');
      audit.record({ action: 'session.revoke', outcome: 'success', at: now, ...audited(s, caller), detail: { target: target.id, targetMac: target.mac, targetIp: target.ip } });
    });
    log.info({ event: 'session.revoke', userId: s.userId, sessionId: s.id, target: target.id }, 'session ended by its operator');
  }

  /** [P-4.9] Ends every session of the caller's operator; answers how many active ones ended. */
  logoutAll(caller: Caller, log: Logger): number {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.logout_all' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    const ended = store.transaction(() => {
      const active = this.#active(s.userId, now).length;
      store.revokeUserSessions(s.userId, now, 'logout-all');
      audit.record({ action: 'session.logout_all', outcome: 'success', at: now, ...audited(s, caller), detail: { ended: active } });
      return active;
    });
    log.info({ event: 'session.logout_all', userId: s.userId, sessionId: s.id, ended }, 'every session of the operator ended');
    return ended;
  }

  /** [P-4.10] The caller's operator's active sessions, oldest first. */
  list(caller: Caller, log: Logger): SessionView[] {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.list' }, log);
    return this.#active(s.userId, this.#d.clock()).map((r) => toView(r, r.id === s.id));
  }

  #active(userId: number, now: number): SessionRecord[] {
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    return this.#d.store.listOpenSessions(userId).filter((r) => isActiveSession(r, now, idleMs));
  }
}

/** The audit fields of a session command: the caller's session, operator, and where it came from. */
function audited(s: SessionRecord, caller: Caller): { userId: number; email: string; sessionId: number; ip: string; mac: string } {
  return { userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac };
}

function toView(r: SessionRecord, current: boolean): SessionView {
  return {
    id: r.id,
    mac: r.mac,
    ip: r.ip,
    ...(r.device !== null && { device: r.device }),
    createdAt: r.createdAt,
    lastSeenAt: r.lastSeenAt,
    current,
  };
}
