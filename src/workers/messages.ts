import type { BucketUse } from '../services/throttle.js';

// What the primary and its workers say to each other over the cluster's IPC channel. Every message
// carries `hellwall: 1`, so that anything else on the channel (a library's own messages) is ignored.

/** What a worker is asked for: its metrics (prom-client JSON), or its state for /readyz. */
export type Question = 'metrics' | 'status';

export type ToWorker =
  | { readonly hellwall: 1; readonly type: 'shutdown' }
  | { readonly hellwall: 1; readonly type: 'reload' }
  | { readonly hellwall: 1; readonly type: 'ask'; readonly id: number; readonly question: Question }
  | BucketUses;

/** Uses of the per-address buckets: from a worker to the primary, which passes them to the others. */
export interface BucketUses {
  readonly hellwall: 1;
  readonly type: 'buckets';
  readonly uses: readonly BucketUse[];
}

export type FromWorker =
  | { readonly hellwall: 1; readonly type: 'listening'; readonly port: number }
  | { readonly hellwall: 1; readonly type: 'answer'; readonly id: number; readonly body: unknown }
  | BucketUses;

/** A worker's answer to `status`. */
export interface WorkerStatus {
  readonly pid: number;
  /** Client connections open on this worker now. */
  readonly connections: number;
  readonly listening: boolean;
}

export function isMessage<T extends { type: string }>(msg: unknown): msg is T {
  return typeof msg === 'object' && msg !== null && (msg as { hellwall?: unknown }).hellwall === 1 && typeof (msg as { type?: unknown }).type === 'string';
}
