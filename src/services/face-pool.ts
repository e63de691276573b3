import { Worker } from 'node:worker_threads';
import type { Logger } from '../deps.js';
import { ServiceError } from '../errors.js';

/** Why the engine refused an image (packages/face/engine.mjs); each is its own wire error. */
export type FaceRefusal = 'not_jpeg' | 'too_large' | 'no_face' | 'several_faces' | 'face_too_small';

/** What the engine in each worker is told at start. */
export interface FaceEngineOptions {
  /** Detector confidence a face must reach to count (as one face, or as a second one). */
  readonly minConfidence: number;
  /** The face's box must be at least this many pixels on its shorter side, in the original image. */
  readonly minFacePixels: number;
  /** Decoded images larger than this many pixels are refused before decoding (decompression bombs). */
  readonly maxPixels: number;
  /** Larger images are scaled down to this longer side before detection. */
  readonly maxSide: number;
}

export type DescribeResult =
  | { readonly ok: true; readonly descriptor: Float32Array; readonly width: number; readonly height: number }
  | { readonly ok: false; readonly code: FaceRefusal };

export interface FaceBox {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly score: number;
}

export type FacesResult =
  | { readonly ok: true; readonly boxes: readonly FaceBox[]; readonly width: number; readonly height: number }
  | { readonly ok: false; readonly code: FaceRefusal };

export interface FacePoolOptions {
  /** packages/face/worker.mjs, as the package's index answers it. */
  readonly workerUrl: URL;
  readonly workers: number;
  /** Jobs that may wait for a free worker; one more is refused with `busy`. */
  readonly queueMax: number;
  readonly engine: FaceEngineOptions;
  readonly log: Logger;
}

interface Job {
  readonly op: 'describe' | 'faces';
  readonly bytes: Uint8Array;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
}

/**
 * Face inference off the event loop: a fixed set of worker threads, one model copy each, one job at
 * a time each, and a bounded queue in front. A verification costs 0.3-0.6 s of CPU; on the main
 * thread it would stall every token check behind it, so it never runs there. A full queue refuses
 * at once (`busy`, E_BUSY) instead of letting waits grow without bound.
 */
export class FacePool {
  readonly #opts: FacePoolOptions;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  #nextId = 1;
  readonly #pending = new Map<number, Job>();
  #closed = false;

  private constructor(opts: FacePoolOptions) {
    this.#opts = opts;
  }

  /** Starts the workers and waits until each has loaded its models; throws if one cannot. */
  static async start(opts: FacePoolOptions): Promise<FacePool> {
    const pool = new FacePool(opts);
    try {
      await Promise.all(Array.from({ length: opts.workers }, () => pool.#spawn()));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** Jobs waiting for a worker, and jobs running. */
  get load(): { readonly queued: number; readonly running: number; readonly workers: number } {
    return { queued: this.#queue.length, running: this.#slots.filter((s) => s.job).length, workers: this.#slots.length };
  }

  /** One face's descriptor, or why the image was refused. Throws ServiceError busy when full. */
  describe(bytes: Uint8Array): Promise<DescribeResult> {
    return this.#submit('describe', bytes) as Promise<DescribeResult>;
  }

  /** Every face's box (for cutting faces out of group photos; tests and tools). */
  faces(bytes: Uint8Array): Promise<FacesResult> {
    return this.#submit('faces', bytes) as Promise<FacesResult>;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const gone = new Error('face pool closed');
    for (const job of this.#queue.splice(0)) job.reject(gone);
    await Promise.all(this.#slots.splice(0).map((s) => s.worker.terminate()));
    for (const job of this.#pending.values()) job.reject(gone);
    this.#pending.clear();
  }

  #submit(op: Job['op'], bytes: Uint8Array): Promise<unknown> {
    if (this.#closed) return Promise.reject(new ServiceError('busy', 'face verification is shutting down; retry later'));
    const idle = this.#slots.find((s) => !s.job);
    if (!idle && this.#queue.length >= this.#opts.queueMax) {
      return Promise.reject(new ServiceError('busy', 'face verification is busy; retry later'));
    }
    return new Promise((resolve, reject) => {
      const job: Job = { op, bytes, resolve, reject };
      if (idle) this.#run(idle, job);
      else this.#queue.push(job);
    });
  }

  #run(slot: Slot, job: Job): void {
    slot.job = job;
    const id = this.#nextId++;
    this.#pending.set(id, job);
    // A copy the worker owns (transferred, not cloned twice): the caller's buffer may be a slice of
    // a larger one that must not move.
    const copy = new Uint8Array(job.bytes);
    slot.worker.postMessage({ id, op: job.op, bytes: copy.buffer }, [copy.buffer]);
  }

  #done(slot: Slot): void {
    slot.job = null;
    const next = this.#queue.shift();
    if (next) this.#run(slot, next);
  }

  #spawn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(this.#opts.workerUrl, { workerData: this.#opts.engine });
      const slot: Slot = { worker, job: null };
      let ready = false;
      worker.on('message', (msg: { type: string; id?: number; message?: string } & Record<string, unknown>) => {
        if (msg.type === 'ready') {
          ready = true;
          this.#slots.push(slot);
          // A worker that came back after a crash takes queued work at once.
          this.#done(slot);
          resolve();
        } else if (msg.type === 'failed') {
          reject(new Error(`face engine failed to start: ${msg.message}`));
        } else if (msg.type === 'result' && msg.id !== undefined) {
          const job = this.#pending.get(msg.id);
          this.#pending.delete(msg.id);
          if (job) {
            if (msg.code === 'internal') job.reject(new Error(`face engine: ${msg.message}`));
            else job.resolve(msg.descriptor ? { ...msg, descriptor: new Float32Array(msg.descriptor as Float32Array) } : msg);
          }
          this.#done(slot);
        }
      });
      worker.on('error', (err) => {
        if (!ready) reject(err);
        this.#opts.log.error({ err: err.message }, 'face worker failed');
      });
      worker.on('exit', (code) => {
        const at = this.#slots.indexOf(slot);
        if (at >= 0) this.#slots.splice(at, 1);
        if (!ready) {
          reject(new Error(`face worker exited with code ${code} before it was ready`));
          return;
        }
        if (slot.job) {
          for (const [id, job] of this.#pending) {
            if (job === slot.job) {
              this.#pending.delete(id);
              job.reject(new Error(`face worker exited with code ${code}`));
            }
          }
        }
        if (!this.#closed) {
          // One lost worker must not shrink the pool for good; the queue waits for its successor.
          this.#opts.log.warn({ code }, 'face worker exited; starting another');
          this.#spawn().catch((err: unknown) => this.#opts.log.error({ err: (err as Error).message }, 'face worker could not be restarted'));
        }
      });
    });
  }
}
