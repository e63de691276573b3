import type { BucketPeers, BucketUse } from '../services/throttle.js';
import { isMessage, type BucketUses, type ToWorker } from './messages.js';

/**
 * A worker's side of the shared per-address buckets (Throttle.share): uses made here go to the
 * primary, which passes them to every other worker; theirs arrive here. Uses are sent once per
 * turn of the event loop, together, so a flood of failed checks costs one message per turn rather
 * than one per check.
 */
export class WorkerBucketPeers implements BucketPeers {
  readonly #outgoing: BucketUse[] = [];
  #scheduled = false;
  #listener: ((msg: unknown) => void) | undefined;

  publish(use: BucketUse): void {
    this.#outgoing.push(use);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const uses = this.#outgoing.splice(0);
      const msg: BucketUses = { hellwall: 1, type: 'buckets', uses };
      if (process.connected) process.send?.(msg, undefined, {}, () => undefined);
    });
  }

  subscribe(apply: (use: BucketUse) => void): void {
    this.close();
    this.#listener = (msg) => {
      if (isMessage<ToWorker>(msg) && msg.type === 'buckets') for (const use of msg.uses) apply(use);
    };
    process.on('message', this.#listener);
  }

  close(): void {
    if (this.#listener) process.off('message', this.#listener);
    this.#listener = undefined;
  }
}
