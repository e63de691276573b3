import type { SessionRecord, Store, StoreChange } from '../store/store.js';

// Bounds the cache's memory; past it the cache simply starts over.
const MAX_ENTRIES = 100_000;

/** A (token, MAC, address) verified under a key: which master token it derives to. */
interface Verified {
  readonly mac: string;
  readonly ip: string;
  readonly keyId: number;
  /** The master token as the #byMaster key. */
  readonly master: string;
  readonly sessionId: number;
}

/**
 * Sessions by master token, in this process's memory, so a token check of a live session costs no
 * database round trip. Correct across processes and nodes because the store announces every
 * committed change to sessions and users (Store.onChange): a change drops what it touches, and
 * while the store cannot vouch for its feed (`coherent` false: the notification channel is down)
 * nothing is answered from memory.
 *
 * A lookup that misses reads the store; what it reads is kept only if no change was announced
 * while the read was under way (the epoch did not move), so a read that raced a revocation can
 * never put the revoked session back.
 *
 * The bound: another node stops answering from a stale entry when the change's notification
 * arrives: about 1 ms after the commit at the median, 17–24 ms at p99 on a loaded 2-core machine
 * (`npm run bench`), and at most two heartbeats when the notification link dies silently
 * (README "Several nodes").
 *
 * It also remembers which (base token, MAC as sent, address) this process verified, and under which
 * key, so that a check of a live session does not recompute the HMAC (`verified`). That memo only
 * saves the derivation of the master token, a pure function of key and inputs; the session itself is
 * still read from the master-token map, so revocation, rotation and every other announced change
 * act on the very next check exactly as without it. It is keyed by the base token and compares the
 * other two fields exactly, so no other token, MAC or address can reach a remembered session, and
 * only a lookup that found a session adds to it (unknown tokens cannot fill it). An entry goes with
 * its session (`forget`, a change, a new epoch), so a revoked token is not kept in memory.
 */
export class SessionCache {
  readonly #store: Store;
  readonly #byMaster = new Map<string, SessionRecord>();
  readonly #masterById = new Map<number, string>();
  /** By base token. */
  readonly #verified = new Map<string, Verified>();
  /** The base token remembered for each session id, so `forget` drops it too. */
  readonly #tokenById = new Map<number, string>();
  #epoch = 0;
  readonly #unsubscribe: () => void;

  constructor(store: Store) {
    this.#store = store;
    this.#unsubscribe = store.onChange((change) => this.#changed(change));
  }

  /** The cached session for this master token, if the cache may answer now. Synchronous. */
  get(master: Buffer): SessionRecord | undefined {
    if (!this.#store.coherent) return undefined;
    return this.#byMaster.get(master.toString('latin1'));
  }

  /**
   * The cached session that `token` with `mac` (exactly as sent) from `ip` derives to under key
   * `keyId`, when this process verified that before and the cache may answer now; no HMAC.
   * Synchronous, allocates nothing.
   */
  verified(token: string, mac: string, ip: string, keyId: number): SessionRecord | undefined {
    if (!this.#store.coherent) return undefined;
    const v = this.#verified.get(token);
    if (v === undefined || v.keyId !== keyId || v.mac !== mac || v.ip !== ip) return undefined;
    const session = this.#byMaster.get(v.master);
    // The entry names a session id: a master-token map entry that is another session is no answer.
    return session !== undefined && session.id === v.sessionId && session.keyId === keyId ? session : undefined;
  }

  /**
   * Remembers that `token` with `mac` from `ip` derives to `master`, the cached `session`'s master
   * token under its key (the caller just computed and found it). Only while that session is cached.
   */
  remember(token: string, mac: string, ip: string, master: Buffer, session: SessionRecord): void {
    const key = this.#masterById.get(session.id);
    if (key === undefined || this.#byMaster.get(key) === undefined || key !== master.toString('latin1')) return;
    const previous = this.#tokenById.get(session.id);
    if (previous !== undefined && previous !== token) this.#verified.delete(previous);
    this.#verified.set(token, { mac, ip, keyId: session.keyId, master: key, sessionId: session.id });
    this.#tokenById.set(session.id, token);
  }

  /** The session from the store (the cache missed), kept for the next check when still current. */
  async load(master: Buffer): Promise<SessionRecord | undefined> {
    const epoch = this.#epoch;
    const session = await this.#store.findSessionByMaster(master);
    if (session && epoch === this.#epoch && this.#store.coherent) this.#set(master.toString('latin1'), session);
    return session;
  }

  /** Records this node's own write of last activity (touches are not announced: too frequent). */
  touched(id: number, at: number): void {
    const key = this.#masterById.get(id);
    const cached = key === undefined ? undefined : this.#byMaster.get(key);
    if (key !== undefined && cached) this.#byMaster.set(key, { ...cached, lastSeenAt: at });
  }

  /** Drops one session now (this node changed it; the announcement will follow). */
  forget(id: number): void {
    this.#epoch++;
    const token = this.#tokenById.get(id);
    if (token !== undefined) {
      this.#verified.delete(token);
      this.#tokenById.delete(id);
    }
    const key = this.#masterById.get(id);
    if (key === undefined) return;
    this.#byMaster.delete(key);
    this.#masterById.delete(id);
  }

  get size(): number {
    return this.#byMaster.size;
  }

  close(): void {
    this.#unsubscribe();
    this.#clear();
  }

  #set(key: string, session: SessionRecord): void {
    if (this.#byMaster.size >= MAX_ENTRIES) this.#clear();
    // The session under another master token than before (rotated): nothing may still reach the old one.
    const before = this.#masterById.get(session.id);
    if (before !== undefined && before !== key) this.forget(session.id);
    this.#byMaster.set(key, session);
    this.#masterById.set(session.id, key);
  }

  #changed(change: StoreChange): void {
    if (change.kind === 'session') return this.forget(change.id);
    // A user's change (role, disabled, password, deletion) touches every session of theirs, and
    // `all` names nothing: both rare, so start over rather than index sessions by user.
    this.#epoch++;
    this.#clear();
  }

  #clear(): void {
    this.#byMaster.clear();
    this.#masterById.clear();
    this.#verified.clear();
    this.#tokenById.clear();
  }
}
