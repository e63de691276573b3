import type { App } from '../app.js';
import { isMessage, type FromWorker, type Question, type ToWorker, type WorkerStatus } from './messages.js';

/**
 * A worker's side of the IPC channel: tells the primary it listens, answers its questions (metrics
 * and state, which the primary sums for /metrics and /readyz), and turns its requests into the same
 * steps a signal would take (shutdown, reload). A lost channel means the primary is gone: the
 * worker drains and stops rather than serve on unsupervised.
 */
export class WorkerChannel {
  readonly #app: App;
  readonly #onMessage: (msg: unknown) => void;
  readonly #onDisconnect: () => void;
  #listening = false;

  constructor(app: App, on: { stop(reason: string): void; reload(): void }) {
    this.#app = app;
    this.#onMessage = (msg) => {
      if (!isMessage<ToWorker>(msg)) return;
      if (msg.type === 'shutdown') on.stop('primary');
      else if (msg.type === 'reload') on.reload();
      else if (msg.type === 'ask') void this.#answer(msg.id, msg.question);
    };
    this.#onDisconnect = () => on.stop('primary gone');
    process.on('message', this.#onMessage);
    process.once('disconnect', this.#onDisconnect);
  }

  listening(port: number): void {
    this.#listening = true;
    this.#send({ hellwall: 1, type: 'listening', port });
  }

  close(): void {
    this.#listening = false;
    process.off('message', this.#onMessage);
    process.off('disconnect', this.#onDisconnect);
  }

  async #answer(id: number, question: Question): Promise<void> {
    let body: unknown;
    if (question === 'metrics') body = await this.#app.metrics.registry.getMetricsAsJSON();
    else body = { pid: process.pid, connections: this.#app.metrics.connectionsOpen(), listening: this.#listening } satisfies WorkerStatus;
    this.#send({ hellwall: 1, type: 'answer', id, body });
  }

  #send(msg: FromWorker): void {
    // The channel may be closing (the primary is exiting): nothing to tell it any more.
    if (process.connected) process.send?.(msg, undefined, {}, () => undefined);
  }
}
