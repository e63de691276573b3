import type { Config } from '../config.js';
import type { Clock } from '../deps.js';
import { ProtocolError } from '../protocol/errors.js';

/** The `limits.*` options (src/config.ts documents each). */
export type ThrottleLimits = Config['limits'];

interface Bucket {
  tokens: number;
  at: number;
}

interface Failures {
  count: number;
  /** No attempt before this time (backoff, or the account lockout). */
  until: number;
}

/** A Map that forgets its least recently used entries beyond `max`. */
class Lru<V> {
  readonly #map = new Map<string, V>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(key: string): V | undefined {
    return this.#map.get(key);
  }
  set(key: string, value: V): void {
    // Re-inserting moves the key to the end: iteration order is recency order.
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value as string);
  }
  delete(key: string): void {
    this.#map.delete(key);
  }
  get size(): number {
    return this.#map.size;
  }
}

/**
 * Brute-force limits (OWASP ASVS V2.2.1, NIST SP 800-63B §5.2.2), in memory per process:
 *
 * - **Per source address**, token buckets on passcode requests, logins and failed token checks:
 *   one address cannot hammer the password hash or guess tokens at speed.
 * - **Per account and address**, after `freeFailures` failures each further attempt must wait,
 *   doubling up to `backoffMaxSeconds`. Keyed by the pair, so an attacker slows only themselves:
 *   the owner, from another address, is not held back by someone else's failures.
 * - **Per account, from anywhere**, `lockoutFailures` consecutive failures lock it for
 *   `lockoutSeconds` (after which each further failure locks it again until a success). An
 *   attacker therefore needs about `lockoutFailures / freeFailures` addresses to lock a victim out,
 *   and then only for the cool-down.
 *
 * Accounts are keyed by the normalized email as sent, whether or not such an account exists, so
 * throttling behaves the same for unknown accounts and tells an attacker nothing.
 */
export class Throttle {
  readonly #limits: ThrottleLimits;
  readonly #clock: Clock;
  readonly #buckets: Lru<Bucket>;
  /** Failed token checks per address, keyed by the bare address: the hot path builds no string. */
  readonly #checks: Lru<Bucket>;
  readonly #pairs: Lru<Failures>;
  readonly #accounts: Lru<Failures>;

  constructor(limits: ThrottleLimits, clock: Clock) {
    this.#limits = limits;
    this.#clock = clock;
    this.#buckets = new Lru(limits.maxTracked);
    this.#checks = new Lru(limits.maxTracked);
    this.#pairs = new Lru(limits.maxTracked);
    this.#accounts = new Lru(limits.maxTracked);
  }

  /**
   * Before a password-checking request: throws E_RATE_LIMITED when the address is over its rate or
   * the account (or this account from this address) must wait. Consumes one from the address.
   */
  beforeAttempt(kind: 'passcode.request' | 'passcode.auth', ip: string, email: string): void {
    if (!this.#limits.enabled) return;
    const now = this.#clock();
    const account = this.#accounts.get(email);
    const pair = this.#pairs.get(`${email}\0${ip}`);
    const until = Math.max(account?.until ?? 0, pair?.until ?? 0);
    if (until > now) throw limited(until - now, 'account');
    const perMinute = kind === 'passcode.request' ? this.#limits.ipPasscodeRequestsPerMinute : this.#limits.ipLoginsPerMinute;
    this.#take(`${kind}\0${ip}`, perMinute, now);
  }

  failure(ip: string, email: string): void {
    if (!this.#limits.enabled) return;
    const now = this.#clock();
    const { freeFailures, backoffMaxSeconds, lockoutFailures, lockoutSeconds } = this.#limits;
    const pairKey = `${email}\0${ip}`;
    const pair = this.#pairs.get(pairKey) ?? { count: 0, until: 0 };
    pair.count++;
    if (pair.count > freeFailures) {
      pair.until = now + Math.min(1000 * 2 ** Math.min(pair.count - freeFailures - 1, 30), backoffMaxSeconds * 1000);
    }
    this.#pairs.set(pairKey, pair);
    const account = this.#accounts.get(email) ?? { count: 0, until: 0 };
    account.count++;
    if (account.count >= lockoutFailures) account.until = now + lockoutSeconds * 1000;
    this.#accounts.set(email, account);
  }

  /** A right password (or a whole login) resets the account's counters, from every address. */
  success(ip: string, email: string): void {
    this.#accounts.delete(email);
    this.#pairs.delete(`${email}\0${ip}`);
  }

  /** Whether the account is locked out (for the log: the client is only told to retry later). */
  lockedOut(email: string): boolean {
    return (this.#accounts.get(email)?.until ?? 0) > this.#clock();
  }

  /**
   * Before a token check: throws E_RATE_LIMITED while the address has used up its failed checks.
   * Costs one map lookup for addresses that never failed, so the hot path stays fast.
   */
  beforeCheck(ip: string): void {
    if (!this.#limits.enabled) return;
    const bucket = this.#checks.get(ip);
    if (!bucket) return;
    const now = this.#clock();
    const tokens = this.#refill(bucket, this.#limits.ipFailedChecksPerMinute, now);
    if (tokens < 1) throw limited(((1 - tokens) * 60_000) / this.#limits.ipFailedChecksPerMinute, 'address');
  }

  /** A token check that answered unauthorized uses up one of the address's failed checks. */
  failedCheck(ip: string): void {
    if (!this.#limits.enabled) return;
    const perMinute = this.#limits.ipFailedChecksPerMinute;
    const now = this.#clock();
    const bucket = this.#checks.get(ip);
    // Already empty stays empty (not negative): the next check is refused by beforeCheck.
    const tokens = bucket ? this.#refill(bucket, perMinute, now) : perMinute;
    this.#checks.set(ip, { tokens: Math.max(0, tokens - 1), at: now });
  }

  get tracked(): number {
    return this.#buckets.size + this.#checks.size + this.#pairs.size + this.#accounts.size;
  }

  #refill(bucket: Bucket, perMinute: number, now: number): number {
    return Math.min(perMinute, bucket.tokens + ((now - bucket.at) * perMinute) / 60_000);
  }

  #take(key: string, perMinute: number, now: number): void {
    const bucket = this.#buckets.get(key);
    const tokens = bucket ? this.#refill(bucket, perMinute, now) : perMinute;
    if (tokens < 1) throw limited(((1 - tokens) * 60_000) / perMinute, 'address');
    this.#buckets.set(key, { tokens: tokens - 1, at: now });
  }
}

/** The error every throttled request gets [P-2.8]: no detail beyond when to come back. */
function limited(waitMs: number, scope: 'account' | 'address'): ThrottledError {
  return new ThrottledError(Math.max(1, Math.ceil(waitMs / 1000)), scope);
}

export class ThrottledError extends ProtocolError {
  override name = 'ThrottledError';
  /** Which limit fired, for logs and metrics only; the client sees the same error either way. */
  readonly scope: 'account' | 'address';
  constructor(retryAfterSeconds: number, scope: 'account' | 'address') {
    super('E_RATE_LIMITED', 'too many attempts; retry later', { retryAfterSeconds });
    this.scope = scope;
  }
}
