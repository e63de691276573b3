import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * Read-only queries run on a worker thread with its own connection to the SQLite file, so that a
 * read whose cost grows with the data (counting a million sessions takes about 300 ms) never holds
 * the event loop that answers token checks. WAL lets this connection read beside the writer; each
 * query sees what was committed when it started, which is all a count or a report needs.
 *
 * The statements are given as SQL at construction and prepared once in the thread. The thread
 * starts on the first query and keeps the process alive only while a query is under way, so a
 * CLI command that never counts pays nothing and one that does still exits when done.
 */
export class SqliteReader {
  readonly #file: string;
  readonly #statements: Readonly<Record<string, string>>;
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  #worker: Worker | undefined;
  #nextId = 0;
  #closed = false;

  constructor(file: string, statements: Readonly<Record<string, string>>) {
    this.#file = file;
    this.#statements = statements;
  }

  /** Runs the named statement with `params`: `get` (first column of the first row) or `all` (every row). */
  query(name: string, mode: 'get' | 'all', params: unknown): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('database is closed'));
    const worker = this.#start();
    const id = this.#nextId++;
    if (this.#pending.size === 0) worker.ref();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, name, mode, params });
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const worker = this.#worker;
    this.#worker = undefined;
    this.#fail(new Error('database is closed'));
    if (worker) await worker.terminate();
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    // Evaluated source (not a module file): the same code runs from dist/ and under the test
    // runner's TypeScript loader; better-sqlite3 is resolved here and handed over by path.
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { driver, file: this.#file, statements: this.#statements } });
    worker.on('message', (msg: { id: number; value?: unknown; error?: string; code?: string }) => {
      const waiting = this.#pending.get(msg.id);
      if (!waiting) return;
      this.#pending.delete(msg.id);
      if (this.#pending.size === 0) worker.unref();
      if (msg.error === undefined) waiting.resolve(msg.value);
      else waiting.reject(Object.assign(new Error(msg.error), msg.code === undefined ? {} : { code: msg.code }));
    });
    // A thread that dies fails what it was asked; the next query starts a new one.
    const gone = (err: Error): void => {
      if (this.#worker === worker) this.#worker = undefined;
      this.#fail(err);
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`the database reader thread exited (${code})`)));
    worker.unref();
    this.#worker = worker;
    return worker;
  }

  #fail(err: Error): void {
    for (const waiting of this.#pending.values()) waiting.reject(err);
    this.#pending.clear();
  }
}

// CommonJS, run by the worker thread. Statements are prepared once; the connection is read-only, so
// nothing done here can take the write lock.
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 1000');
const prepared = {};
for (const [name, sql] of Object.entries(workerData.statements)) prepared[name] = db.prepare(sql);
parentPort.on('message', ({ id, name, mode, params }) => {
  try {
    const st = prepared[name];
    const value = mode === 'get' ? st.pluck().get(params) : st.all(params);
    parentPort.postMessage({ id, value });
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err), code: err && err.code });
  }
});
`;
