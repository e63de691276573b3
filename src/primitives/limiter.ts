import { ServiceError } from '../errors.js';

/** Who a job is for and how urgent it is: jobs are queued and served fairly by `key`. */
export interface JobTicket {
  /** The requester's address group (Throttle.group): each gets a fair share of the queue. */
  readonly key: string;
  /**
   * `high`: a login that already holds a valid passcode (its owner has waited for a mail), served
   * before `normal` work such as fresh passcode requests.
   */
  readonly priority?: 'high' | 'normal';
}

const ANONYMOUS: JobTicket = { key: '', priority: 'normal' };

interface Lane {
  /** Keys with waiting jobs, in the order they are served (round robin). */
  readonly order: string[];
  readonly queues: Map<string, Array<() => void>>;
}

/**
 * Runs at most `concurrency` async jobs at once and queues at most `queueMax` more. Password
 * hashing goes through this so a burst of logins cannot occupy the whole libuv pool and starve
 * token checks; a full queue answers busy rather than growing without bound.
 *
 * Fair: waiting jobs are kept per key (address group) and served round robin, one job per key in
 * turn, so a key with many queued jobs delays another key's job by at most one job per active key,
 * not by its whole backlog; and one key may hold at most `perKeyMax` queued jobs, so a few
 * addresses cannot fill the queue for everyone. High-priority jobs (logins completing with a
 * passcode) are served before normal ones.
 */
export class Limiter {
  readonly #concurrency: number;
  readonly #queueMax: number;
  readonly #perKeyMax: number;
  #running = 0;
  #queued = 0;
  readonly #lanes: { high: Lane; normal: Lane } = { high: newLane(), normal: newLane() };
  readonly #perKey = new Map<string, number>();

  constructor(concurrency: number, queueMax: number, perKeyMax = Math.max(2, Math.ceil(queueMax / 8))) {
    this.#concurrency = concurrency;
    this.#queueMax = queueMax;
    this.#perKeyMax = perKeyMax;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queued;
  }

  async run<T>(job: () => Promise<T>, ticket: JobTicket = ANONYMOUS): Promise<T> {
    if (this.#running >= this.#concurrency) {
      const mine = this.#perKey.get(ticket.key) ?? 0;
      if (this.#queued >= this.#queueMax || mine >= this.#perKeyMax) {
        throw new ServiceError('busy', 'server is busy; retry later');
      }
      await new Promise<void>((resolve) => this.#enqueue(ticket, resolve));
    } else {
      this.#running++;
    }
    try {
      return await job();
    } finally {
      // Hand the slot straight to the next job; only release it when nobody waits.
      const next = this.#dequeue();
      if (next) next();
      else this.#running--;
    }
  }

  #enqueue(ticket: JobTicket, resolve: () => void): void {
    const lane = this.#lanes[ticket.priority ?? 'normal'];
    let queue = lane.queues.get(ticket.key);
    if (!queue) {
      queue = [];
      lane.queues.set(ticket.key, queue);
      lane.order.push(ticket.key);
    }
    queue.push(resolve);
    this.#queued++;
    this.#perKey.set(ticket.key, (this.#perKey.get(ticket.key) ?? 0) + 1);
  }

  #dequeue(): (() => void) | undefined {
    for (const lane of [this.#lanes.high, this.#lanes.normal]) {
      const key = lane.order.shift();
      if (key === undefined) continue;
      const queue = lane.queues.get(key)!;
      const next = queue.shift()!;
      // Back of the line if it has more: one job per key per turn.
      if (queue.length > 0) lane.order.push(key);
      else lane.queues.delete(key);
      this.#queued--;
      const left = this.#perKey.get(key)! - 1;
      if (left > 0) this.#perKey.set(key, left);
      else this.#perKey.delete(key);
      return next;
    }
    return undefined;
  }
}

function newLane(): Lane {
  return { order: [], queues: new Map() };
}
