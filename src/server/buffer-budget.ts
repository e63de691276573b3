import type { FrameBudget } from '../codec/frame-decoder.js';

/**
 * One listener's budget of bytes held for partial request frames, shared by all its connections
 * (`maxBufferedBytes`). A frame that arrives whole in one read costs nothing here; a frame that
 * does not is allocated at its announced length when its header arrives, and that allocation must
 * fit the budget. The connection caps alone cannot bound this: 10,000 connections each sending a
 * 4-byte header announcing 64 KiB would make the server allocate 625 MiB.
 */
export class BufferBudget implements FrameBudget {
  readonly capacity: number;
  #used = 0;
  #peak = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Bytes held for partial frames now. */
  get used(): number {
    return this.#used;
  }

  /** The most ever held at once (tests and the memory benchmark read it). */
  get peak(): number {
    return this.#peak;
  }

  reserve(bytes: number): boolean {
    if (this.#used + bytes > this.capacity) return false;
    this.#used += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
    return true;
  }

  release(bytes: number): void {
    this.#used -= bytes;
  }
}
