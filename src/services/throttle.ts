import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import type { Clock } from '../deps.js';
import { addressGroup } from '../net/address-group.js';
import type { Store, Tx } from '../store/store.js';
import { ServiceError } from '../errors.js';

/** The `limits.*` options (src/config.ts documents each). */
export type ThrottleLimits = Config['limits'];

interface Bucket {
  tokens: number;
  at: number;
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
  get size(): number {
    return this.#map.size;
  }
}

/**
 * One use of a per-address bucket in another process (a worker of the same primary): applied here
 * as if made here, so that the workers' buckets agree and an address gets its rate once, not once
 * per worker. `requests`: passcode requests and logins (key: kind and address group); `checks`:
 * failed token checks (key: address group).
 */
export interface BucketUse {
  readonly table: 'requests' | 'checks';
  readonly key: string;
  readonly perMinute: number;
  readonly at: number;
}

/** The other processes sharing this service's addresses (src/workers relays between them). */
export interface BucketPeers {
  /** Tells every other process of a use made here. */
  publish(use: BucketUse): void;
  /** Registers what applies the other processes' uses here. */
  subscribe(apply: (use: BucketUse) => void): void;
}

/** An admitted password-checking attempt: what its outcome must update. */
export interface Admission {
  readonly email: string;
  readonly group: string;
  /** Counter keys in the shared store. */
  readonly pair: string;
  readonly account: string;
  readonly known: string;
}

// A completed login makes its address group "known" for the account this long: attempts from it
// are not held by the account lockout (the owner's way in while an attacker floods the account).
const KNOWN_MS = 90 * 86_400_000;
// Pair counters are kept this long after their last attempt; account counters until their lockout
// ends or, without one, this long (NIST counts consecutive failures; a day is enough to bound them).
const FAILURES_KEPT_MS = 86_400_000;

/**
 * Brute-force limits (OWASP ASVS V2.2.1, NIST SP 800-63B §5.2.2).
 *
 * - **Per source address** (IPv6 grouped by `limits.ipv6Prefix`), token buckets on passcode
 *   requests, logins and failed token checks, in this process's memory: cheap, and refusing a
 *   flood before anything else runs. Each node counts its own (N nodes admit N times the rate).
 * - **Per account and address**: every attempt is counted when it is admitted (a reservation that
 *   only a completed login releases), and once `freeFailures` are outstanding each further attempt
 *   must wait, doubling up to `backoffMaxSeconds`. Keyed by the pair, so an attacker slows only
 *   themselves.
 * - **Per account, from anywhere**: `lockoutFailures` attempts without a completed login lock it
 *   for `lockoutSeconds`; the count then starts afresh, so after the cool-down it takes as many
 *   again. Attempts from an address group where the account completed a login before are not held
 *   by the lockout (only by their own pair's backoff): an attacker with only the email cannot keep
 *   the owner out.
 *
 * The account and pair counters live in the shared store, counted atomically in one transaction
 * per admission: the bounds hold for any mix of pipelining, parallel connections and nodes. A right
 * password in `passcode.request` releases nothing; only a completed login does, so password plus
 * wrong passcodes, repeated, still runs into the same bounds.
 *
 * Counter keys are hashes of the normalized email as sent (whether or not such an account exists:
 * limits reveal nothing) and the address group; no email is stored in the counters.
 */
export class Throttle {
  readonly #limits: ThrottleLimits;
  readonly #clock: Clock;
  readonly #store: Store;
  readonly #buckets: Lru<Bucket>;
  /** Failed token checks per address group; the hot path looks up one key and builds no string. */
  readonly #checks: Lru<Bucket>;

  #peers: BucketPeers | undefined;

  /** Told (after commit) when an account's lockout fires: the alerts mail its owner. */
  readonly #onLocked: ((email: string, until: number, ip: string) => void) | undefined;

  constructor(limits: ThrottleLimits, clock: Clock, store: Store, onLocked?: (email: string, until: number, ip: string) => void) {
    this.#onLocked = onLocked;
    this.#limits = limits;
    this.#clock = clock;
    this.#store = store;
    this.#buckets = new Lru(limits.maxTracked);
    this.#checks = new Lru(limits.maxTracked);
  }

  /**
   * Shares the per-address buckets with other processes (workers): every use here is published,
   * every use there applied here. Without it each process counts only its own (as separate nodes
   * do). A use reaches the others within a turn of their event loops, so a burst spread over N
   * workers in that moment can exceed a bucket by at most N - 1.
   */
  share(peers: BucketPeers): void {
    this.#peers = peers;
    peers.subscribe((use) => {
      const lru = use.table === 'checks' ? this.#checks : this.#buckets;
      const bucket = lru.get(use.key);
      const tokens = bucket ? this.#refill(bucket, use.perMinute, Math.max(use.at, bucket.at)) : use.perMinute;
      lru.set(use.key, { tokens: Math.max(0, tokens - 1), at: Math.max(use.at, bucket?.at ?? 0) });
    });
  }

  /** The key every per-address limit uses for `ip`: the address, or its IPv6 prefix. */
  group(ip: string): string {
    return addressGroup(ip, this.#limits.ipv6Prefix);
  }

  /**
   * Before a password-checking request: refuses (ServiceError rate-limited) when the address is
   * over its rate, the pair must wait, or the account is locked; otherwise counts the attempt and
   * answers the admission its outcome reports to.
   */
  async admit(kind: 'passcode.request' | 'passcode.auth', ip: string, email: string): Promise<Admission> {
    const group = this.group(ip);
    const admission: Admission = {
      email,
      group,
      pair: counterKey('p', email, group),
      account: counterKey('a', email),
      known: counterKey('k', email, group),
    };
    if (!this.#limits.enabled) return admission;
    const now = this.#clock();
    const perMinute = kind === 'passcode.request' ? this.#limits.ipPasscodeRequestsPerMinute : this.#limits.ipLoginsPerMinute;
    this.#take(`${kind}\0${group}`, perMinute, now);
    const { freeFailures, backoffMaxSeconds, lockoutSeconds } = this.#limits;
    let lockedUntil = 0;
    const refusal = await this.#store.transaction(async (tx) => {
      lockedUntil = 0;
      // Locked from here to commit: concurrent attempts on the same pair or account, on any node,
      // queue behind this one and each decides on what the one before it left.
      const [pair, account, known] = await tx.readCounters([admission.pair, admission.account, admission.known], now);
      if (pair && pair.until > now) return new RateLimited(pair.until - now, 'account');
      if (!known && account && account.until > now) return new RateLimited(account.until - now, 'account', true);
      // Admitted: counted now (refusals are not), released only by a completed login. Once
      // freeFailures are outstanding, this one included, the next attempt must wait.
      const [counted] = await tx.hitCounters([admission.pair], now, now + FAILURES_KEPT_MS);
      const outstanding = counted!.count - freeFailures;
      if (outstanding >= 0) await tx.blockCounter(admission.pair, now + Math.min(1000 * 2 ** Math.min(outstanding, 30), backoffMaxSeconds * 1000));
      lockedUntil = await this.#countAccount(tx, admission.account, now, lockoutSeconds);
      return undefined;
    });
    if (lockedUntil > 0) this.#onLocked?.(email, lockedUntil, ip);
    if (refusal) throw refusal;
    return admission;
  }

  /**
   * A completed login: releases the pair's and the account's counts, and makes the address group
   * known for the account.
   */
  async succeeded(a: Admission): Promise<void> {
    if (!this.#limits.enabled) return;
    const now = this.#clock();
    await this.#store.transaction(async (tx) => {
      await tx.clearCounters([a.pair, a.account]);
      await tx.hitCounters([a.known], now, now + KNOWN_MS);
    });
  }

  /**
   * Counts one more passcode issued to the account in the current hour; false when the hour's
   * `passcodesPerHour` are used up (none may be issued). This, with `passcodes.maxAttempts`,
   * bounds second-factor guesses per day (SECURITY.md).
   */
  async passcodeIssued(email: string): Promise<boolean> {
    if (!this.#limits.enabled) return true;
    const now = this.#clock();
    const [issued] = await this.#store.hitCounters([counterKey('c', email)], now, now + 3_600_000);
    return issued!.count <= this.#limits.passcodesPerHour;
  }

  /**
   * Before a token check: throws rate-limited while the address has used up its failed checks.
   * Costs one map lookup for addresses that never failed, so the hot path stays fast.
   */
  beforeCheck(ip: string): void {
    if (!this.#limits.enabled) return;
    const bucket = this.#checks.get(this.group(ip));
    if (!bucket) return;
    const now = this.#clock();
    const tokens = this.#refill(bucket, this.#limits.ipFailedChecksPerMinute, now);
    if (tokens < 1) throw new RateLimited(((1 - tokens) * 60_000) / this.#limits.ipFailedChecksPerMinute, 'address');
  }

  /** A token check that answered unauthorized uses up one of the address's failed checks. */
  failedCheck(ip: string): void {
    if (!this.#limits.enabled) return;
    const perMinute = this.#limits.ipFailedChecksPerMinute;
    const now = this.#clock();
    const group = this.group(ip);
    const bucket = this.#checks.get(group);
    // Already empty stays empty (not negative): the next check is refused by beforeCheck.
    const tokens = bucket ? this.#refill(bucket, perMinute, now) : perMinute;
    this.#checks.set(group, { tokens: Math.max(0, tokens - 1), at: now });
    this.#peers?.publish({ table: 'checks', key: group, perMinute, at: now });
  }

  get tracked(): number {
    return this.#buckets.size + this.#checks.size;
  }

  /**
   * Counts an attempt against the account; at the bound, locks it and starts the count afresh.
   * Answers when the lock it set ends, or 0.
   */
  async #countAccount(tx: Tx, key: string, now: number, lockoutSeconds: number): Promise<number> {
    const [account] = await tx.hitCounters([key], now, now + FAILURES_KEPT_MS);
    if (account!.count < this.#limits.lockoutFailures) return 0;
    await tx.clearCounters([key]);
    await tx.blockCounter(key, now + lockoutSeconds * 1000);
    return now + lockoutSeconds * 1000;
  }

  #refill(bucket: Bucket, perMinute: number, now: number): number {
    return Math.min(perMinute, bucket.tokens + ((now - bucket.at) * perMinute) / 60_000);
  }

  #take(key: string, perMinute: number, now: number): void {
    const bucket = this.#buckets.get(key);
    const tokens = bucket ? this.#refill(bucket, perMinute, now) : perMinute;
    if (tokens < 1) throw new RateLimited(((1 - tokens) * 60_000) / perMinute, 'address');
    this.#buckets.set(key, { tokens: tokens - 1, at: now });
    this.#peers?.publish({ table: 'requests', key, perMinute, at: now });
  }
}

/** A counter's key: its kind and a hash of what it counts, so no email is stored in clear. */
function counterKey(kind: string, ...parts: string[]): string {
  return `${kind}:${createHash('sha256').update(parts.join('\0')).digest('base64url').slice(0, 27)}`;
}

/** The error every throttled request gets [P-2.8]: no detail beyond when to come back. */
export class RateLimited extends ServiceError {
  override name = 'RateLimited';
  /** Which limit fired, for logs and metrics only; the client sees the same error either way. */
  readonly scope: 'account' | 'address';
  /** The account lockout fired (not a pair's backoff): operators tell the two apart in the log. */
  readonly lockedOut: boolean;
  constructor(waitMs: number, scope: 'account' | 'address', lockedOut = false) {
    super('rate-limited', 'too many attempts; retry later', Math.max(1, Math.ceil(waitMs / 1000)));
    this.scope = scope;
    this.lockedOut = lockedOut;
  }
}
