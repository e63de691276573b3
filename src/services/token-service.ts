import type { AuditSink } from '../audit/audit-log.js';
import type { Config } from '../config.js';
import type { Clock, Logger, RandomBytes } from '../deps.js';
import type { Metrics } from '../ops/metrics.js';
import type { RetiredTokenRecord, SessionRecord, Store } from '../store/store.js';
import { constantEqualsBytes } from '../primitives/constant-equals.js';
import { ServiceError } from '../errors.js';
import type { KeyRing } from '../keys/key-ring.js';
import { normalizeMac } from '../primitives/normalize.js';
import { ENROLMENT_COMMANDS } from './factors.js';
import type { CompiledPolicy } from './policy.js';
import type { SessionCache } from './session-cache.js';
import type { Throttle } from './throttle.js';
import type { Alerts } from './alerts.js';
import { isWellFormedToken, masterToken, rotatedToken } from '../primitives/tokens.js';

export type CheckResult =
  | { status: 'authorized'; user: { email: string; role: string }; expiresAt: number }
  | { status: 'renew'; token: string; user: { email: string; role: string }; expiresAt: number; renewableUntil: number }
  | { status: 'unauthorized' };

const UNAUTHORIZED: CheckResult = Object.freeze({ status: 'unauthorized' });

// Last activity is written at most this often per session, so token checks are reads.
const TOUCH_INTERVAL_MS = 60_000;

/** The authorization policy in force; read on every check, so a reload applies to the next one. */
export interface PolicySource {
  readonly current: Pick<CompiledPolicy, 'allows'>;
}

export interface TokenServiceDeps {
  readonly config: Pick<Config, 'tokens'>;
  readonly store: Store;
  readonly sessions: SessionCache;
  readonly keys: KeyRing;
  readonly clock: Clock;
  readonly random: RandomBytes;
  readonly metrics: Pick<Metrics, 'renewal' | 'reuseDetected'>;
  readonly throttle: Pick<Throttle, 'beforeCheck' | 'failedCheck'>;
  readonly audit: AuditSink;
  readonly policy: PolicySource;
  /** Tells the owner when reuse detection ends a session (never on the check fast path). */
  readonly alerts?: Pick<Alerts, 'send'>;
}

type CheckInput = { token: string; mac: string; seenIp: string; request: string };

/**
 * The third seed command. Renewal is bounded the way RFC 9700 bounds refresh tokens: an idle
 * limit and an absolute limit, rotation on every renewal, a short grace for requests already in
 * flight, and reuse of a rotated-out token after the grace treated as theft [P-4.5].
 *
 * The common case (a live session in the node's cache, current key, token not expired, policy
 * allows) answers synchronously with no store round trip and no promise; everything else (a cache
 * miss, a renewal, a retired token) is async. Renewal and reuse decide on the row as locked in the
 * store, never on the cached copy, so two nodes seeing the same old token agree.
 */
export class TokenService {
  readonly #d: TokenServiceDeps;

  constructor(deps: TokenServiceDeps) {
    this.#d = deps;
  }

  check(input: CheckInput, log: Logger): CheckResult | Promise<CheckResult> {
    const { keys, clock, sessions } = this.#d;
    this.#d.throttle.beforeCheck(input.seenIp);
    const now = clock();
    const key = keys.current;
    // The common case: this exact (token, MAC, address) was verified under the current key and its
    // session is still cached, so the HMAC below would find the same entry (SessionCache#verified).
    // The token equals one that was well formed: no need to test it again.
    const known = sessions.verified(input.token, input.mac, input.seenIp, key.id);
    if (known !== undefined) return this.#current(known, input, now, log);
    if (!isWellFormedToken(input.token)) return this.#deny(log, input, 'malformed-token');
    const mac = normalizeMac(input.mac);
    // [P-3.2] Another MAC or another address yields another master token, which finds nothing:
    // "wrong device" and "unknown token" are indistinguishable by construction.
    const master = masterToken(key.master, input.token, mac, input.seenIp);
    const cached = sessions.get(master);
    if (cached?.keyId === key.id) {
      sessions.remember(input.token, input.mac, input.seenIp, master, cached);
      return this.#current(cached, input, now, log);
    }
    return this.#lookup(input, mac, master, now, log);
  }

  /**
   * The slow path of a check: the current key's session from the store, then its retired tokens,
   * then older keys not yet retired. Their cost (one HMAC and two lookups each) falls on unknown
   * tokens and on sessions not renewed since a rotation, never on the common case. The key id
   * stored with the row must be the key that found it.
   */
  async #lookup(input: CheckInput, mac: string, currentMaster: Buffer, now: number, log: Logger): Promise<CheckResult> {
    const { store, keys, sessions } = this.#d;
    for (const key of keys.verifying) {
      const master = key === keys.current ? currentMaster : masterToken(key.master, input.token, mac, input.seenIp);
      const session = sessions.get(master) ?? (await sessions.load(master));
      if (session?.keyId === key.id) {
        // Only a session the cache holds is remembered (a load that raced a change is not kept).
        if (key === keys.current) sessions.remember(input.token, input.mac, input.seenIp, master, session);
        return this.#current(session, input, now, log);
      }
      const retired = await store.findRetiredToken(master);
      if (retired?.keyId === key.id) return this.#retired(retired, input, now, log);
    }
    return this.#deny(log, input, 'unknown-token-or-binding');
  }

  /**
   * [P-3.6] The session a session command's token belongs to: found like a token check finds it
   * (token + MAC + the address seen), and only while the token would check `authorized` right now
   * (no renewal, no policy: these commands concern the session itself). Anything else throws
   * unauthenticated, changes nothing, and counts as a failed check for the address limit [P-2.8].
   */
  async authenticate(input: { token: string; mac: string; seenIp: string; command: string }, log: Logger): Promise<SessionRecord> {
    const { keys, clock, sessions } = this.#d;
    this.#d.throttle.beforeCheck(input.seenIp);
    const now = clock();
    const refuse = (reason: string, sessionId?: number): never => {
      this.#d.throttle.failedCheck(input.seenIp);
      log.info({ event: 'session.auth', outcome: 'unauthenticated', reason, sessionId, command: input.command }, 'session command refused');
      throw new ServiceError('unauthenticated', 'not authenticated');
    };
    if (!isWellFormedToken(input.token)) return refuse('malformed-token');
    const mac = normalizeMac(input.mac);
    for (const key of keys.verifying) {
      const master = masterToken(key.master, input.token, mac, input.seenIp);
      const session = sessions.get(master) ?? (await sessions.load(master));
      if (session?.keyId !== key.id) continue;
      // A rotated-out token is not looked up at all: it finds no session here, whatever its grace.
      if (session.revokedAt !== null) return refuse('revoked', session.id);
      if (session.userDisabled) return refuse('account-disabled', session.id);
      if (now >= session.expiresAt) return refuse('expired', session.id);
      // An enrolment-only session (factors.ts) answers its enrolment commands and nothing else.
      if (session.scope !== 'full' && !ENROLMENT_COMMANDS.has(input.command)) return refuse('enrolment-only', session.id);
      this.#touch(session, now, log);
      return session;
    }
    return refuse('unknown-token-or-binding');
  }

  #current(s: SessionRecord, input: CheckInput, now: number, log: Logger): CheckResult | Promise<CheckResult> {
    if (s.revokedAt !== null) return this.#deny(log, input, 'revoked', s.id);
    if (s.userDisabled) return this.#deny(log, input, 'account-disabled', s.id);
    // An enrolment-only session authorizes nothing and is never renewed (factors.ts).
    if (s.scope !== 'full') return this.#deny(log, input, 'enrolment-only', s.id);
    // [P-4.7] Before renewal too: a request the role may not make must not rotate the token either,
    // since the client would never see the new one in an `unauthorized` answer.
    if (!this.#d.policy.current.allows(s.userRole, input.request)) return this.#forbid(log, input, s);
    if (now < s.expiresAt) {
      this.#touch(s, now, log);
      return { status: 'authorized', user: { email: s.userEmail, role: s.userRole }, expiresAt: s.expiresAt };
    }
    return this.#renew(s, input, now, log);
  }

  /** Last activity, written at most once a minute per session, after the answer and best effort. */
  #touch(s: SessionRecord, now: number, log: Logger): void {
    if (now - s.lastSeenAt < TOUCH_INTERVAL_MS) return;
    this.#d.sessions.touched(s.id, now);
    this.#d.store.touchSession(s.id, now).catch((err: unknown) => {
      log.warn({ event: 'session.touch', sessionId: s.id, err: (err as Error).message }, 'last activity not recorded; the next check retries');
    });
  }

  async #renew(s: SessionRecord, input: CheckInput, now: number, log: Logger): Promise<CheckResult> {
    const { store, config } = this.#d;
    const nonce = this.#d.random(16);
    // Always the current key: a session made before a key rotation moves to the new key here.
    const key = this.#d.keys.current;
    const token = rotatedToken(key.rotate, input.token, nonce);
    // Decided on the row as it is now, locked until commit: the cached copy may be older (another
    // node's activity or rotation), and a second node renewing the same token must wait and lose.
    const outcome = await store.transaction(async (tx): Promise<CheckResult | 'moved' | string> => {
      const row = await tx.findSessionById(s.id);
      if (!row || row.generation !== s.generation || !constantEqualsBytes(row.master, s.master)) return 'moved';
      if (row.revokedAt !== null) return 'revoked';
      if (row.userDisabled) return 'account-disabled';
      if (now >= row.absoluteExpiresAt) return 'absolute-limit';
      if (now >= row.lastSeenAt + config.tokens.idleSeconds * 1000) return 'idle-limit';
      const expiresAt = Math.min(now + config.tokens.ttlSeconds * 1000, row.absoluteExpiresAt);
      const done = await tx.rotateSession({
        sessionId: row.id,
        oldMaster: row.master,
        newMaster: masterToken(key.master, token, row.mac, row.ip),
        keyId: key.id,
        oldKeyId: row.keyId,
        generation: row.generation,
        now,
        expiresAt,
        graceUntil: now + config.tokens.graceSeconds * 1000,
        nonce,
      });
      if (!done) return 'moved';
      // The rotation and its audit row commit together.
      await this.#d.audit.recordIn(tx, {
        action: 'token.renew',
        outcome: 'success',
        at: now,
        ...who(row),
        ip: input.seenIp,
        detail: { generation: row.generation + 1, request: input.request },
      });
      return { status: 'renew', token, user: { email: row.userEmail, role: row.userRole }, expiresAt, renewableUntil: row.absoluteExpiresAt };
    });
    if (outcome === 'moved') {
      // Another request (on any node) rotated this session a moment ago: the token is now a retired
      // one, and the grace path hands out that rotation's successor.
      this.#d.sessions.forget(s.id);
      const retired = await store.findRetiredToken(s.master);
      return retired ? this.#retired(retired, input, now, log) : this.#deny(log, input, 'rotation-conflict', s.id);
    }
    if (typeof outcome === 'string') {
      this.#d.sessions.forget(s.id);
      return this.#deny(log, input, outcome, s.id);
    }
    this.#d.sessions.forget(s.id);
    log.info({ event: 'token.renew', sessionId: s.id, generation: s.generation + 1 }, 'token renewed');
    this.#d.metrics.renewal();
    return outcome;
  }

  async #retired(r: RetiredTokenRecord, input: CheckInput, now: number, log: Logger): Promise<CheckResult> {
    const { store, keys } = this.#d;
    const s = await store.findSessionById(r.sessionId);
    if (!s || s.revokedAt !== null) return this.#deny(log, input, 'revoked', r.sessionId);
    if (now <= r.graceUntil) {
      // [P-4.5] In flight during the rotation: hand out the same successor, never a second one. It
      // was made with the key current at that rotation, which need not be the current one now.
      const key = keys.get(r.rotateKeyId);
      const token = key ? rotatedToken(key.rotate, input.token, r.nonce) : undefined;
      const successor = key && token ? masterToken(key.master, token, s.mac, s.ip) : undefined;
      if (
        token &&
        successor &&
        s.generation === r.generation + 1 &&
        s.keyId === r.rotateKeyId &&
        constantEqualsBytes(successor, s.master) &&
        !s.userDisabled
      ) {
        if (!this.#d.policy.current.allows(s.userRole, input.request)) return this.#forbid(log, input, s);
        return {
          status: 'renew',
          token,
          user: { email: s.userEmail, role: s.userRole },
          expiresAt: s.expiresAt,
          renewableUntil: s.absoluteExpiresAt,
        };
      }
      return this.#deny(log, input, 'superseded', s.id);
    }
    // [P-4.5] A rotated-out token after the grace: either the client or a thief holds a stale copy.
    // We cannot tell which, so the whole session ends (RFC 9700 §4.14.2).
    const revoked = await store.transaction(async (tx) => {
      if (!(await tx.revokeSession(s.id, now, 'token-reuse'))) return false;
      await this.#d.audit.recordIn(tx, {
        action: 'token.reuse',
        outcome: 'failure',
        at: now,
        ...who(s),
        ip: input.seenIp,
        detail: { generation: r.generation, retiredAt: r.retiredAt, request: input.request },
      });
      return true;
    });
    this.#d.sessions.forget(s.id);
    if (revoked) {
      log.warn({ event: 'token.reuse', sessionId: s.id, userId: s.userId }, 'rotated-out token reused; session revoked');
      this.#d.metrics.reuseDetected();
      this.#d.alerts?.send('session-reuse', { id: s.userId, email: s.userEmail }, { at: now, sessionId: s.id, ip: input.seenIp, mac: s.mac });
    }
    return this.#deny(log, input, 'token-reuse', s.id);
  }

  // [P-4.7] A valid token whose role may not make this request. Not a failed check for the address
  // limit [P-2.8]: the client proved it holds a live token, and an application server asking on
  // behalf of many operators must not be locked out by one operator's forbidden requests.
  #forbid(log: Logger, input: { request: string; seenIp: string }, s: SessionRecord): CheckResult {
    const role = s.userRole;
    log.info({ event: 'token.check', outcome: 'denied', reason: 'policy', sessionId: s.id, request: input.request, role }, 'token check denied by policy');
    // Coalesced per session and role (server-chosen values): a client choosing a new request name
    // each time must not turn each denial into a row.
    this.#d.audit.record(
      { action: 'token.denied', outcome: 'denied', ...who(s), ip: input.seenIp, detail: { request: input.request, role } },
      `token.denied:${s.id}:${role}`,
    );
    return UNAUTHORIZED;
  }

  #deny(log: Logger, input: { request: string; seenIp: string }, reason: string, sessionId?: number): CheckResult {
    // [P-2.8] Failed checks from one address are limited: nobody gets to guess tokens at speed.
    this.#d.throttle.failedCheck(input.seenIp);
    // Info for a known session (revoked, expired, reused: worth an operator's eye); debug for an
    // unknown token, which anyone can send at will and which the metrics count.
    log[sessionId === undefined ? 'debug' : 'info']({ event: 'token.check', outcome: 'unauthorized', reason, sessionId, request: input.request }, 'token check denied');
    return UNAUTHORIZED;
  }
}

/** The audit fields naming a session and its operator. */
function who(s: SessionRecord): { userId: number; email: string; sessionId: number; mac: string } {
  return { userId: s.userId, email: s.userEmail, sessionId: s.id, mac: s.mac };
}
