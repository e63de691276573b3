import type { SessionRecord, Store, StoreChange } from '../store/store.js';

// Bounds the cache's memory; past it the cache simply starts over.
const MAX_ENTRIES = 100_000;

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
 */
export class SessionCache {
  readonly #store: Store;
  readonly #byMaster = new Map<string, SessionRecord>();
  readonly #masterById = new Map<number, string>();
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
  }
}
