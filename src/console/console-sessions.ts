import { createHmac } from 'node:crypto';
import type { Clock, RandomBytes } from '../deps.js';
import { constantEquals } from '../primitives/constant-equals.js';

/**
 * A console login between its two steps: what the second step (passcode.auth) needs again. Kept
 * here, in this process's memory only, for the passcode's lifetime at most, so the password never
 * goes back to the browser (no secret in a page).
 */
export interface PendingLogin {
  readonly email: string;
  readonly phone: string;
  readonly password: string;
  readonly mac: string;
  readonly expiresAt: number;
}

/**
 * A logged-in administrator. The browser holds only a random id (the session cookie); the
 * Hellwall token of the login stays here and every request authorizes with it through the same
 * AdminService the wire uses, so a revoked session, a disabled account or a lost admin role ends
 * the console session at its next click.
 */
export interface ConsoleSession {
  readonly token: string;
  readonly mac: string;
  readonly email: string;
  /** The token's own expiry: the console never renews it, the administrator logs in again. */
  readonly expiresAt: number;
  lastSeenAt: number;
}

export interface ConsoleSessionsOptions {
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly idleMs: number;
  /** Entries of each kind held at most; the oldest are forgotten beyond it (memory stays bounded). */
  readonly max?: number;
}

const DEFAULT_MAX = 1000;

/**
 * The console's own state: pending logins and sessions by cookie value, and the CSRF tokens, which
 * are MACs of the cookie they go with under a key made at start (nothing to store, nothing that
 * works for another browser's cookie). A restart logs every administrator out, by design.
 */
export class ConsoleSessions {
  readonly #o: ConsoleSessionsOptions;
  readonly #max: number;
  readonly #csrfKey: Buffer;
  readonly #pending = new Map<string, PendingLogin>();
  readonly #sessions = new Map<string, ConsoleSession>();

  constructor(opts: ConsoleSessionsOptions) {
    this.#o = opts;
    this.#max = opts.max ?? DEFAULT_MAX;
    this.#csrfKey = opts.random(32);
  }

  /** A fresh unguessable cookie value (256 bits). */
  newId(): string {
    return this.#o.random(32).toString('base64url');
  }

  startLogin(login: PendingLogin): string {
    const id = this.newId();
    this.#put(this.#pending, id, login);
    return id;
  }

  pendingLogin(id: string | undefined): PendingLogin | undefined {
    const p = id === undefined ? undefined : this.#pending.get(id);
    if (p && this.#o.clock() >= p.expiresAt) {
      this.#pending.delete(id!);
      return undefined;
    }
    return p;
  }

  endLogin(id: string | undefined): void {
    if (id !== undefined) this.#pending.delete(id);
  }

  open(session: Omit<ConsoleSession, 'lastSeenAt'>): string {
    const id = this.newId();
    this.#put(this.#sessions, id, { ...session, lastSeenAt: this.#o.clock() });
    return id;
  }

  /** The session, if it is neither idle past the timeout nor past its token's expiry; marks it used. */
  use(id: string | undefined): ConsoleSession | undefined {
    if (id === undefined) return undefined;
    const s = this.#sessions.get(id);
    if (!s) return undefined;
    const now = this.#o.clock();
    if (now >= s.lastSeenAt + this.#o.idleMs || now >= s.expiresAt) {
      this.#sessions.delete(id);
      return undefined;
    }
    s.lastSeenAt = now;
    return s;
  }

  end(id: string | undefined): void {
    if (id !== undefined) this.#sessions.delete(id);
  }

  get size(): { pending: number; sessions: number } {
    return { pending: this.#pending.size, sessions: this.#sessions.size };
  }

  /** The CSRF token for forms sent with this cookie value (`purpose` keeps login and session tokens apart). */
  csrf(purpose: 'login' | 'session', cookie: string): string {
    return createHmac('sha256', this.#csrfKey).update(`${purpose}\0${cookie}`).digest('base64url');
  }

  checkCsrf(purpose: 'login' | 'session', cookie: string | undefined, token: unknown): boolean {
    return cookie !== undefined && typeof token === 'string' && constantEquals(this.csrf(purpose, cookie), token);
  }

  #put<V extends { expiresAt: number }>(map: Map<string, V>, id: string, value: V): void {
    const now = this.#o.clock();
    // Expired entries first (insertion order is roughly expiry order), then the oldest beyond max.
    for (const [k, v] of map) {
      if (now < v.expiresAt && map.size < this.#max) break;
      map.delete(k);
    }
    map.set(id, value);
  }
}
