import type { Config } from '../config.js';
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
export class SessionService {
  readonly #d: { config: Config; store: Store; clock: Clock; tokens: TokenService };

  constructor(deps: { config: Config; store: Store; clock: Clock; tokens: TokenService }) {
    this.#d = deps;
  }

  /** [P-4.8] Ends the caller's session. */
  logout(caller: Caller, log: Logger): void {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.logout' }, log);
    this.#d.store.revokeSession(s.id, this.#d.clock(), 'logout');
    log.info({ event: 'session.logout', userId: s.userId, sessionId: s.id }, 'session ended by logout');
  }

  /** [P-4.9] Ends every session of the caller's operator; answers how many active ones ended. */
  logoutAll(caller: Caller, log: Logger): number {
    const s = this.#d.tokens.authenticate({ ...caller, command: 'session.logout_all' }, log);
    const { store, clock } = this.#d;
    const now = clock();
    const ended = store.transaction(() => {
      const active = this.#active(s.userId, now).length;
      store.revokeUserSessions(s.userId, now, 'logout-all');
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
