import type { Worker } from 'node:cluster';
import type { Logger } from '../deps.js';
import { isMessage, type FromWorker, type Question, type ToWorker } from './messages.js';

export interface SupervisorOptions {
  readonly count: number;
  /** Starts one worker process (cluster.fork in production; tests pass their own). */
  readonly fork: () => Worker;
  readonly log: Logger;
  /** Called once, when every worker listens for the first time. */
  readonly onListening: (port: number) => void;
  /** Workers keep failing before they listen: the primary gives up (exits non-zero). */
  readonly onGiveUp: () => void;
  /** A worker was restarted after it died. */
  readonly onRestart?: () => void;
  /** First restart delay; doubled per consecutive death of the same slot, up to `maxBackoffMs`. */
  readonly backoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Consecutive deaths before listening, over all slots, after which the primary gives up. */
  readonly maxStartFailures?: number;
}

interface Slot {
  worker: Worker | undefined;
  listening: boolean;
  /** Deaths in a row of this slot's workers; reset once one has listened for a while. */
  deaths: number;
  listeningSince: number;
  restart: NodeJS.Timeout | undefined;
}

// A worker that served this long before it died counts as having run fine: its slot starts its
// backoff afresh.
const STABLE_MS = 30_000;

/**
 * Keeps `count` workers running: starts them, restarts one that dies (after a delay that doubles
 * while the slot keeps dying), and gives up when workers die before ever listening several times
 * in a row (a broken configuration or database would otherwise be retried forever). Also the
 * primary's way to talk to every worker: broadcast a request, or ask a question and collect answers.
 */
export class Supervisor {
  readonly #o: Required<Omit<SupervisorOptions, 'onRestart'>> & Pick<SupervisorOptions, 'onRestart'>;
  readonly #slots: Slot[] = [];
  readonly #answers = new Map<number, (body: unknown, worker: Worker) => void>();
  #nextId = 0;
  #startFailures = 0;
  #announced = false;
  #stopping = false;
  #port = 0;

  constructor(opts: SupervisorOptions) {
    this.#o = { backoffMs: 250, maxBackoffMs: 10_000, maxStartFailures: opts.count + 1, ...opts };
  }

  start(): void {
    for (let i = 0; i < this.#o.count; i++) {
      const slot: Slot = { worker: undefined, listening: false, deaths: 0, listeningSince: 0, restart: undefined };
      this.#slots.push(slot);
      this.#spawn(slot);
    }
  }

  /** Workers listening now, of `count`. */
  get listening(): number {
    return this.#slots.filter((s) => s.listening).length;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Sends a request to every running worker. */
  broadcast(type: 'reload' | 'shutdown'): void {
    for (const slot of this.#slots) if (slot.worker) this.#send(slot.worker, { hellwall: 1, type });
  }

  /** Asks every listening worker; answers from those that reply within `timeoutMs`. */
  async ask(question: Question, timeoutMs = 2000): Promise<unknown[]> {
    const workers = this.#slots.filter((s) => s.listening && s.worker).map((s) => s.worker!);
    const answers = await Promise.all(
      workers.map(
        (worker) =>
          new Promise<unknown>((resolve) => {
            const id = this.#nextId++;
            const timer = setTimeout(() => {
              this.#answers.delete(id);
              this.#o.log.warn({ pid: worker.process.pid, question }, 'a worker did not answer in time');
              resolve(undefined);
            }, timeoutMs);
            this.#answers.set(id, (body) => {
              clearTimeout(timer);
              resolve(body);
            });
            this.#send(worker, { hellwall: 1, type: 'ask', id, question });
          }),
      ),
    );
    return answers.filter((a) => a !== undefined);
  }

  /**
   * Asks every worker to drain and stop, and resolves once all have exited (those still running
   * after `backstopMs` are killed). Answers whether every one exited with 0.
   */
  async stop(backstopMs: number): Promise<boolean> {
    this.#stopping = true;
    for (const slot of this.#slots) clearTimeout(slot.restart);
    let clean = true;
    const exits = this.#slots
      .filter((s) => s.worker)
      .map((s) => {
        const worker = s.worker!;
        // One still starting has nothing to drain and cannot hear the request yet: ended by signal.
        const starting = !s.listening;
        const exited = new Promise<void>((resolve) => {
          worker.once('exit', (code: number | null) => {
            if (code !== 0 && !starting) clean = false;
            resolve();
          });
        });
        if (starting) worker.process.kill('SIGTERM');
        else this.#send(worker, { hellwall: 1, type: 'shutdown' });
        return exited;
      });
    const backstop = setTimeout(() => {
      for (const slot of this.#slots) slot.worker?.process.kill('SIGKILL');
    }, backstopMs);
    await Promise.all(exits);
    clearTimeout(backstop);
    return clean;
  }

  /** Kills every worker at once (a second signal: the operator gave up waiting). */
  kill(): void {
    this.#stopping = true;
    for (const slot of this.#slots) {
      clearTimeout(slot.restart);
      slot.worker?.process.kill('SIGKILL');
    }
  }

  #spawn(slot: Slot): void {
    slot.restart = undefined;
    const worker = this.#o.fork();
    slot.worker = worker;
    slot.listening = false;
    worker.on('message', (msg: unknown) => {
      if (!isMessage<FromWorker>(msg)) return;
      if (msg.type === 'buckets') {
        // The per-address buckets: what one worker used, every other applies.
        for (const other of this.#slots) if (other.worker && other.worker !== worker) this.#send(other.worker, msg);
      } else if (msg.type === 'answer') {
        const answer = this.#answers.get(msg.id);
        this.#answers.delete(msg.id);
        answer?.(msg.body, worker);
      } else if (msg.type === 'listening') {
        slot.listening = true;
        slot.listeningSince = performance.now();
        this.#startFailures = 0;
        this.#port = msg.port;
        this.#o.log.debug({ pid: worker.process.pid, port: msg.port }, 'worker listening');
        if (!this.#announced && this.listening === this.#o.count) {
          this.#announced = true;
          this.#o.onListening(this.#port);
        }
      }
    });
    worker.once('exit', (code: number | null, signal: string | null) => this.#exited(slot, worker, code, signal));
  }

  #exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    const listened = slot.listening;
    slot.worker = undefined;
    slot.listening = false;
    if (this.#stopping) return;
    const pid = worker.process.pid;
    if (!listened) {
      this.#startFailures++;
      if (this.#startFailures >= this.#o.maxStartFailures) {
        this.#o.log.fatal({ pid, code, signal, failures: this.#startFailures }, 'workers keep failing before they listen; giving up');
        this.#o.onGiveUp();
        return;
      }
    }
    if (listened && performance.now() - slot.listeningSince > STABLE_MS) slot.deaths = 0;
    const delay = Math.min(this.#o.backoffMs * 2 ** slot.deaths, this.#o.maxBackoffMs);
    slot.deaths++;
    this.#o.log.error({ pid, code, signal, restartInMs: delay }, 'worker died; restarting it');
    slot.restart = setTimeout(() => {
      this.#spawn(slot);
      this.#o.onRestart?.();
    }, delay);
  }

  #send(worker: Worker, msg: ToWorker): void {
    if (worker.isConnected()) worker.send(msg, undefined, () => undefined);
  }
}
