import type { AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger } from '../deps.js';
import type { SessionRecord, Store } from '../store/store.js';
import { ServiceError } from '../errors.js';
import { withKnownDevices, type SessionDevice } from './device-service.js';
import type { SessionCache } from './session-cache.js';
import { isActiveSession } from './session-rules.js';
import type { TokenService } from './token-service.js';

/** What an operator may see of one of their sessions (never a master token). */
export interface SessionView {
  id: number;
  mac: string;
  ip: string;
  device?: string;
  /** The session's MAC among the operator's known devices (device-service.ts): its name, if any. */
  deviceName?: string;
  deviceRegistered?: boolean;
  createdAt: number;
  lastSeenAt: number;
  current: boolean;
}

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
  readonly config: Pick<Config, 'tokens'>;
  readonly store: Store;
  readonly sessions: SessionCache;
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
  async logout(caller: Caller, log: Logger): Promise<void> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'session.logout' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    await store.transaction(async (tx) => {
      await tx.revokeSession(s.id, now, 'logout');
      await audit.recordIn(tx, { action: 'session.logout', outcome: 'success', at: now, ...audited(s, caller) });
    });
    this.#d.sessions.forget(s.id);
    log.info({ event: 'session.logout', userId: s.userId, sessionId: s.id }, 'session ended by logout');
  }

  /**
   * [P-4.11] Ends one other session of the caller's own operator (a lost device, seen in
   * session.list). A session of another operator, or none, is not-found: which is not said.
   */
  async revoke(caller: Caller, sessionId: number, log: Logger): Promise<void> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'session.revoke' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    const refused = await store.transaction(async (tx) => {
      const target = await tx.findSessionById(sessionId);
      if (!target || target.userId !== s.userId || !isActiveSession(target, now, idleMs)) {
        return !target ? 'no-such-session' : target.userId !== s.userId ? 'another-operator' : 'not-active';
      }
      await tx.revokeSession(target.id, now, 'revoked-by-owner');
      await audit.recordIn(tx, { action: 'session.revoke', outcome: 'success', at: now, ...audited(s, caller), detail: { target: target.id, targetMac: target.mac, targetIp: target.ip } });
      return undefined;
    });
    if (refused) {
      audit.record(
        { action: 'session.revoke', outcome: refused === 'another-operator' ? 'denied' : 'failure', at: now, ...audited(s, caller), detail: { target: sessionId, reason: refused } },
        `session.revoke:${s.id}:${refused}`,
      );
      log.info({ event: 'session.revoke', outcome: 'refused', reason: refused, userId: s.userId, sessionId: s.id, target: sessionId }, 'session revoke refused');
      throw new ServiceError('not-found', 'no such active session of yours');
    }
    this.#d.sessions.forget(sessionId);
    log.info({ event: 'session.revoke', userId: s.userId, sessionId: s.id, target: sessionId }, 'session ended by its operator');
  }

  /** [P-4.9] Ends every session of the caller's operator; answers how many active ones ended. */
  async logoutAll(caller: Caller, log: Logger): Promise<number> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'session.logout_all' }, log);
    const { store, clock, audit } = this.#d;
    const now = clock();
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    const ended = await store.transaction(async (tx) => {
      const active = (await tx.listOpenSessions(s.userId)).filter((r) => isActiveSession(r, now, idleMs)).length;
      await tx.revokeUserSessions(s.userId, now, 'logout-all');
      await audit.recordIn(tx, { action: 'session.logout_all', outcome: 'success', at: now, ...audited(s, caller), detail: { ended: active } });
      return active;
    });
    log.info({ event: 'session.logout_all', userId: s.userId, sessionId: s.id, ended }, 'every session of the operator ended');
    return ended;
  }

  /** [P-4.10] The caller's operator's active sessions, oldest first. */
  async list(caller: Caller, log: Logger): Promise<SessionView[]> {
    const s = await this.#d.tokens.authenticate({ ...caller, command: 'session.list' }, log);
    const now = this.#d.clock();
    const idleMs = this.#d.config.tokens.idleSeconds * 1000;
    const active = (await this.#d.store.listOpenSessions(s.userId)).filter((r) => isActiveSession(r, now, idleMs));
    return (await withKnownDevices(this.#d.store, active)).map((r) => toView(r, r.id === s.id));
  }
}

/** The audit fields of a session command: the caller's session, operator, and where it came from. */
function audited(s: SessionRecord, caller: Caller): { userId: number; email: string; sessionId: number; ip: string; mac: string } {
  return { userId: s.userId, email: s.userEmail, sessionId: s.id, ip: caller.seenIp, mac: s.mac };
}

function toView(r: SessionRecord & SessionDevice, current: boolean): SessionView {
  return {
    id: r.id,
    mac: r.mac,
    ip: r.ip,
    ...(r.device !== null && { device: r.device }),
    ...(r.deviceName !== undefined && { deviceName: r.deviceName }),
    ...(r.deviceRegistered !== undefined && { deviceRegistered: r.deviceRegistered }),
    createdAt: r.createdAt,
    lastSeenAt: r.lastSeenAt,
    current,
  };
}
