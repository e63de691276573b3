import type { Logger } from '../deps.js';
import { ProtocolError } from '../protocol/errors.js';
import type { RetiredTokenRecord, SessionRecord } from '../store/store.js';
import { constantEqualsBytes } from './constant-equals.js';
import { normalizeMac } from './normalize.js';
import type { AuthDeps } from './passcode-service.js';
import type { CompiledPolicy } from './policy.js';
import { isWellFormedToken, masterToken, rotatedToken } from './tokens.js';

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

export type TokenServiceDeps = Pick<AuthDeps, 'config' | 'store' | 'keys' | 'clock' | 'random' | 'metrics' | 'throttle' | 'audit'> & {
  readonly policy: PolicySource;
};

/**
 * The third seed command. Renewal is bounded the way RFC 9700 bounds refresh tokens: an idle
 * limit and an absolute limit, rotation on every renewal, a short grace for requests already in
 * flight, and reuse of a rotated-out token after the grace treated as theft [P-4.5].
 */
export class TokenService {
  readonly #d: TokenServiceDeps;

  constructor(deps: TokenServiceDeps) {
    this.#d = deps;
  }

  check(input: { token: string; mac: string; seenIp: string; request: string }, log: Logger): CheckResult {
    const { store, keys, clock } = this.#d;
    this.#d.throttle.beforeCheck(input.seenIp);
    const now = clock();
    if (!isWellFormedToken(input.token)) return this.#deny(log, input, 'malformed-token');
    const mac = normalizeMac(input.mac);
    // [P-3.2] Another MAC or another address yields another master token, which finds nothing:
    // "wrong device" and "unknown token" are indistinguishable by construction.
    // The current key first: every session made or renewed since the last key rotation is found by
    // the first lookup, as before rotation existed. Older keys not yet retired are tried only on a
    // miss, so their cost (one HMAC and two lookups each) falls on unknown tokens and on sessions
    // not renewed since a rotation, never on the common case. The key id stored with the row must
    // be the key that found it.
    for (const key of keys.verifying) {
      const master = masterToken(key.master, input.token, mac, input.seenIp);
      const session = store.findSessionByMaster(master);
      if (session?.keyId === key.id) return this.#current(session, input, now, log);
      const retired = store.findRetiredToken(master);
      if (retired?.keyId === key.id) return this.#retired(retired, input, now, log);
    }
    return this.#deny(log, input, 'unknown-token-or-binding');
  }

  /**
   * [P-3.6] The session a session command's token belongs to: found like a token check finds it
   * (token + MAC + the address seen), and only while the token would check `authorized` right now
   * (no renewal, no policy: these commands concern the session itself). Anything else throws
   * E_UNAUTHENTICATED, changes nothing, and counts as a failed check for the address limit [P-2.8].
   */
  authenticate(input: { token: string; mac: string; seenIp: string; command: string }, log: Logger): SessionRecord {
    const { store, keys, clock } = this.#d;
    this.#d.throttle.beforeCheck(input.seenIp);
    const now = clock();
    const refuse = (reason: string, sessionId?: number): never => {
      this.#d.throttle.failedCheck(input.seenIp);
      log.info({ event: 'session.auth', outcome: 'unauthenticated', reason, sessionId, command: input.command }, 'session command refused');
      throw new ProtocolError('E_UNAUTHENTICATED', 'not authenticated');
    };
    if (!isWellFormedToken(input.token)) return refuse('malformed-token');
    const mac = normalizeMac(input.mac);
    for (const key of keys.verifying) {
      const session = store.findSessionByMaster(masterToken(key.master, input.token, mac, input.seenIp));
      if (session?.keyId !== key.id) continue;
      // A rotated-out token is not looked up at all: it finds no session here, whatever its grace.
      if (session.revokedAt !== null) return refuse('revoked', session.id);
      if (session.userDisabled) return refuse('account-disabled', session.id);
      if (now >= session.expiresAt) return refuse('expired', session.id);
      if (now - session.lastSeenAt >= TOUCH_INTERVAL_MS) store.touchSession(session.id, now);
      return session;
    }
    return refuse('unknown-token-or-binding');
  }

  #current(s: SessionRecord, input: { token: string; request: string; seenIp: string }, now: number, log: Logger): CheckResult {
    const { store, config } = this.#d;
    const user = { email: s.userEmail, role: s.userRole };
    if (s.revokedAt !== null) return this.#deny(log, input, 'revoked', s.id);
    if (s.userDisabled) return this.#deny(log, input, 'account-disabled', s.id);
    // [P-4.7] Before renewal too: a request the role may not make must not rotate the token either,
    // since the client would never see the new one in an `unauthorized` answer.
    if (!this.#d.policy.current.allows(s.userRole, input.request)) return this.#forbid(log, input, s);
    if (now < s.expiresAt) {
      if (now - s.lastSeenAt >= TOUCH_INTERVAL_MS) store.touchSession(s.id, now);
      return { status: 'authorized', user, expiresAt: s.expiresAt };
    }
    if (now >= s.absoluteExpiresAt) return this.#deny(log, input, 'absolute-limit', s.id);
    if (now >= s.lastSeenAt + config.tokens.idleSeconds * 1000) return this.#deny(log, input, 'idle-limit', s.id);

    const nonce = this.#d.random(16);
    // Always the current key: a session made before a key rotation moves to the new key here.
    const key = this.#d.keys.current;
    const token = rotatedToken(key.rotate, input.token, nonce);
    const expiresAt = Math.min(now + config.tokens.ttlSeconds * 1000, s.absoluteExpiresAt);
    // The rotation and its audit row commit together.
    const rotated = store.transaction(() => {
      const done = store.rotateSession({
        sessionId: s.id,
        oldMaster: s.master,
        newMaster: masterToken(key.master, token, s.mac, s.ip),
        keyId: key.id,
        oldKeyId: s.keyId,
        generation: s.generation,
        now,
        expiresAt,
        graceUntil: now + config.tokens.graceSeconds * 1000,
        nonce,
      });
      if (done) {
        this.#d.audit.record({
          action: 'token.renew',
          outcome: 'success',
          at: now,
          ...who(s),
          ip: input.seenIp,
          detail: { generation: s.generation + 1, request: input.request },
        });
      }
      return done;
    });
    if (!rotated) {
      // Another worker rotated this session a moment ago: the token is now a retired one, and the
      // grace path hands out that worker's successor.
      const retired = store.findRetiredToken(s.master);
      return retired ? this.#retired(retired, input, now, log) : this.#deny(log, input, 'rotation-conflict', s.id);
    }
    log.info({ event: 'token.renew', sessionId: s.id, generation: s.generation + 1 }, 'token renewed');
    this.#d.metrics.renewal();
    return { status: 'renew', token, user, expiresAt, renewableUntil: s.absoluteExpiresAt };
  }

  #retired(r: RetiredTokenRecord, input: { token: string; request: string; seenIp: string }, now: number, log: Logger): CheckResult {
    const { store, keys } = this.#d;
    const s = store.findSessionById(r.sessionId);
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
    store.transaction(() => {
      store.revokeSession(s.id, now, 'token-reuse');
      this.#d.audit.record({
        action: 'token.reuse',
        outcome: 'failure',
        at: now,
        ...who(s),
        ip: input.seenIp,
        detail: { generation: r.generation, retiredAt: r.retiredAt, request: input.request },
      });
    });
    log.warn({ event: 'token.reuse', sessionId: s.id, userId: s.userId }, 'rotated-out token reused; session revoked');
    this.#d.metrics.reuseDetected();
    return this.#deny(log, input, 'token-reuse', s.id);
  }

  // [P-4.7] A valid token whose role may not make this request. Not a failed check for the address
  // limit [P-2.8]: the client proved it holds a live token, and an application server asking on
  // behalf of many operators must not be locked out by one operator's forbidden requests.
  #forbid(log: Logger, input: { request: string; seenIp: string }, s: SessionRecord): CheckResult {
    const role = s.userRole;
    log.info({ event: 'token.check', outcome: 'denied', reason: 'policy', sessionId: s.id, request: input.request, role }, 'token check denied by policy');
    this.#d.audit.record(
      { action: 'token.denied', outcome: 'denied', ...who(s), ip: input.seenIp, detail: { request: input.request, role } },
      `token.denied:${s.id}:${input.request}`,
    );
    return UNAUTHORIZED;
  }

  #deny(log: Logger, input: { request: string; seenIp: string }, reason: string, sessionId?: number): CheckResult {
    // [P-2.8] Failed checks from one address are limited: nobody gets to guess tokens at speed.
    this.#d.throttle.failedCheck(input.seenIp);
    log.info({ event: 'token.check', outcome: 'unauthorized', reason, sessionId, request: input.request }, 'token check denied');
    return UNAUTHORIZED;
  }
}

/** The audit fields naming a session and its operator. */
function who(s: SessionRecord): { userId: number; email: string; sessionId: number; mac: string } {
  return { userId: s.userId, email: s.userEmail, sessionId: s.id, mac: s.mac };
}
