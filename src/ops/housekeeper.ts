import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Clock, Logger } from '../deps.js';
import { StoreBusyError, StoreUnavailableError, type ExpiredCounts, type ExpiryPolicy, type Store } from '../store/store.js';
import type { Metrics } from './metrics.js';

export interface HousekeeperOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly log: Logger;
  readonly metrics: Pick<Metrics, 'housekeeping'>;
  /** Time between the end of one pass and the start of the next; 0: no timer (runOnce only). */
  readonly intervalMs: number;
  readonly policy: ExpiryPolicy;
  /**
   * How long one batch may hold the event loop (SQLite deletes synchronously) and the write lock:
   * while batches take longer, the next is halved (down to 1 row); while they take less than half,
   * it is doubled again, up to `policy.batch`. Absent: always `policy.batch`. A delete costs
   * 0.1–0.2 ms per session at a million rows (index pages no longer cached), so 500 would hold the
   * loop for 50–100 ms.
   */
  readonly maxBatchMs?: number;
}

export interface HousekeepingPass {
  readonly deleted: ExpiredCounts;
  readonly batches: number;
  /** Another writer held the database beyond the store's short wait: the pass stopped early. */
  readonly busy: boolean;
  /** Another node was running its pass on the same database: this one did nothing. */
  readonly elsewhere: boolean;
  readonly ms: number;
}

// Sums by key, so that a table added to ExpiredCounts later (the audit log) is counted, logged and
// exported with no change here beyond EMPTY, which the compiler then asks for.
const add = (a: ExpiredCounts, b: ExpiredCounts): ExpiredCounts =>
  Object.fromEntries(Object.entries(b).map(([k, n]) => [k, ((a as unknown as Record<string, number>)[k] ?? 0) + (n as number)])) as unknown as ExpiredCounts;

/** What the server passes as `maxBatchMs`: a batch costs requests waiting behind it about this much. */
export const HOUSEKEEPING_BATCH_MS = 5;
const FIRST_ADAPTIVE_BATCH = 32;

const EMPTY: ExpiredCounts = { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 };

/**
 * Deletes expired rows inside the server: every `intervalMs`, one pass of small batches (one short
 * transaction each) with a turn of the event loop between them, so requests wait for one batch at
 * most. A pass ends when a batch deletes less than the batch size from every table, or when the
 * database is busy (the next pass retries). On a shared database one node at a time runs a pass
 * (Store.exclusive). The timer never keeps the process alive.
 */
export class Housekeeper {
  readonly #o: HousekeeperOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<HousekeepingPass> | undefined;
  #stopped = false;

  constructor(opts: HousekeeperOptions) {
    this.#o = opts;
  }

  /** Starts the periodic passes (none when `intervalMs` is 0). */
  start(): void {
    if (this.#o.intervalMs > 0 && !this.#timer && !this.#stopped) this.#schedule();
  }

  /** Stops the timer and waits for a pass in progress to end after its current batch. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /**
   * One pass to completion (or until busy); joins a pass already running. Errors other than a busy
   * database are thrown.
   */
  runOnce(): Promise<HousekeepingPass> {
    this.#running ??= this.#pass().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.runOnce()
        .catch((err: unknown) => this.#o.log.error({ err: (err as Error).message }, 'housekeeping failed'))
        .finally(() => {
          if (!this.#stopped) this.#schedule();
        });
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  /** One node at a time on a shared database: the others skip their turn. */
  async #pass(): Promise<HousekeepingPass> {
    const pass = await this.#o.store.exclusive('housekeeping', () => this.#batches());
    return pass ?? { deleted: EMPTY, batches: 0, busy: false, elsewhere: true, ms: 0 };
  }

  async #batches(): Promise<HousekeepingPass> {
    const { store, clock, log, metrics, policy } = this.#o;
    const started = performance.now();
    // One instant for the whole pass: a row is judged once, and a long pass deletes no more.
    const now = clock();
    let deleted = EMPTY;
    let batches = 0;
    let busy = false;
    const { maxBatchMs } = this.#o;
    // Adapting: start small (a first batch of 500 at a million rows would already stall the loop).
    let size = maxBatchMs === undefined ? policy.batch : Math.min(policy.batch, FIRST_ADAPTIVE_BATCH);
    for (;;) {
      let counts: ExpiredCounts;
      const batchStarted = performance.now();
      const batch = size === policy.batch ? policy : { ...policy, batch: size };
      try {
        counts = await store.deleteExpired(now, batch);
      } catch (err) {
        if (!(err instanceof StoreBusyError || err instanceof StoreUnavailableError)) throw err;
        busy = true;
        log.warn({ event: 'housekeeping', batches, deleted }, 'housekeeping skipped: database busy; the next pass retries');
        break;
      }
      batches++;
      deleted = add(deleted, counts);
      for (const [table, n] of Object.entries(counts) as Array<[string, number]>) if (n > 0) metrics.housekeeping(table, n);
      if (!Object.values(counts).some((n) => (n as number) >= batch.batch)) break;
      if (maxBatchMs !== undefined) {
        const took = performance.now() - batchStarted;
        if (took > maxBatchMs) size = Math.max(1, Math.floor(size / 2));
        else if (took < maxBatchMs / 2) size = Math.min(policy.batch, size * 2);
      }
      // Let queued requests run before the next batch.
      await nextTurn();
      if (this.#stopped) break;
    }
    const ms = Math.round(performance.now() - started);
    if (Object.values(deleted).some((n) => (n as number) > 0)) log.info({ event: 'housekeeping', deleted, batches, ms }, 'expired rows deleted');
    return { deleted, batches, busy, elsewhere: false, ms };
  }
}
