import { ProtocolError } from '../protocol/errors.js';

/**
 * Runs at most `concurrency` async jobs at once and queues at most `queueMax` more. Password
 * hashing goes through this so a burst of logins cannot occupy the whole libuv pool and starve
 * token checks; a full queue answers E_BUSY rather than growing without bound.
 */
export class Limiter {
  readonly #concurrency: number;
  readonly #queueMax: number;
  #running = 0;
  readonly #queue: Array<() => void> = [];

  constructor(concurrency: number, queueMax: number) {
    this.#concurrency = concurrency;
    this.#queueMax = queueMax;
  }

  get running(): number {
    return this.#running;
  }

  get queued(): number {
    return this.#queue.length;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#concurrency) {
      if (this.#queue.length >= this.#queueMax) {
        throw new ProtocolError('E_BUSY', 'server is busy; retry later');
      }
      await new Promise<void>((resolve) => this.#queue.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await job();
    } finally {
      const next = this.#queue.shift();
      // Hand the slot straight to the next job; only release it when nobody waits.
      if (next) next();
      else this.#running--;
    }
  }
}
