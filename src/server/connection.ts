import type { Duplex } from 'node:stream';
import { EMPTY, FrameDecoder, parseFrame, type BudgetRefusal, type DecodeFailure, type FrameBudget, type FrameErrorCode } from '../codec/frame-decoder.js';
import { encodeJsonFrames } from '../codec/frame-encoder.js';
import { responseJson } from '../codec/response-json.js';
import type { Logger } from '../deps.js';
import { toErrorResponse } from '../protocol/errors.js';
import type { RequestContext } from '../protocol/request-context.js';
import type { DispatchFn, Response } from './dispatcher.js';

export interface ConnectionOptions {
  readonly dispatch: DispatchFn;
  readonly log: Logger;
  /**
   * When given, the connection logs through `log.child(logBindings)`, made the first time anything
   * is logged: most connections never log, and a child logger is a few hundred bytes an idle
   * connection need not hold.
   */
  readonly logBindings?: Record<string, unknown>;
  /** The peer address as the server sees it, normalized. */
  readonly ip: string;
  readonly maxFrameBytes: number;
  readonly maxInflight: number;
  /** How long to wait for the peer to close after we ended the stream, before destroying it. */
  readonly closeTimeoutMs?: number;
  /**
   * Wraps the synchronous handling of one incoming read, so that everything a read produces can
   * share per-read work (the store validates its session cache once per read).
   */
  readonly aroundRead?: <T>(handle: () => T) => T;
  /** Told the code of a framing error before the connection closes because of it (for metrics). */
  readonly onFramingError?: (code: FrameErrorCode) => void;
  /**
   * [P-1.6] A frame must be complete this long after its first byte arrived, or the connection is
   * closed (after the answers already owed): a client trickling a frame cannot hold a connection
   * and its buffer forever. 0 turns the deadline off.
   */
  readonly frameTimeoutMs?: number;
  /** Told when the frame deadline closes the connection (for metrics). */
  readonly onFrameTimeout?: () => void;
  /**
   * [P-1.8] The listener's budget for partial frames, shared by all its connections. A partial
   * frame it has no room for closes the connection (after the answers already owed).
   */
  readonly budget?: FrameBudget;
  /** Told when the budget refused this connection's partial frame (for the listener's log and metrics). */
  readonly onOverBudget?: (refusal: BudgetRefusal, ip: string) => void;
}

/** The RequestContext of one connection, whose child logger is made on first use. */
class ConnectionContext implements RequestContext {
  readonly ip: string;
  refusals = 0;
  #log: Logger | undefined;
  readonly #parent: Logger;
  readonly #bindings: Record<string, unknown> | undefined;

  constructor(ip: string, parent: Logger, bindings: Record<string, unknown> | undefined) {
    this.ip = ip;
    this.#parent = parent;
    this.#bindings = bindings;
    if (bindings === undefined) this.#log = parent;
  }

  get log(): Logger {
    return (this.#log ??= this.#parent.child(this.#bindings!));
  }
}

/** An answer still being worked on (an async dispatch); its JSON text once done. */
interface Slot {
  json: string | null;
}

/**
 * One client connection over any Duplex (a TLS socket in production, a duplexPair in tests).
 * Owns the framing, the ordering of responses [P-2.4], the in-flight limit [P-2.6] and
 * backpressure: it stops reading while the peer is not reading what we write.
 */
export class Connection {
  readonly #stream: Duplex;
  readonly #opts: ConnectionOptions;
  readonly #decoder: FrameDecoder;
  readonly #ctx: ConnectionContext;
  /**
   * Responses in request order: the JSON text of a finished one (a synchronous answer costs no
   * object here), or a Slot for one still being worked on.
   */
  readonly #slots: Array<string | Slot> = [];
  #writeBlocked = false;
  /** No new requests are taken (framing error or shutdown); answers owed are still sent. */
  #closing = false;
  /** The peer will send nothing more; requests already received (backlog included) are answered. */
  #peerEnded = false;
  #readPaused = false;
  #backlogScheduled = false;
  /** When the frame now being received began (performance.now()), or null between frames. */
  #frameStartedAt: number | null = null;
  #frameTimer: NodeJS.Timeout | null = null;
  readonly closed: Promise<void>;

  constructor(stream: Duplex, opts: ConnectionOptions) {
    this.#stream = stream;
    this.#opts = opts;
    this.#decoder = new FrameDecoder(opts.maxFrameBytes, opts.budget ?? null);
    this.#ctx = new ConnectionContext(opts.ip, opts.log, opts.logBindings);
    this.closed = new Promise((resolve) => stream.once('close', () => resolve()));
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('drain', () => {
      this.#writeBlocked = false;
      this.#updateReading();
    });
    stream.on('end', () => this.#onPeerEnd());
    stream.on('error', (err) => this.log.debug({ err: err.message }, 'connection error'));
    stream.once('close', () => {
      if (this.#frameTimer) clearTimeout(this.#frameTimer);
      if (this.#decoder.bufferedBytes > 0) {
        this.log.info({ bufferedBytes: this.#decoder.bufferedBytes }, 'peer closed mid-frame; partial frame dropped');
      }
      // However the connection ended, its partial frame's share of the budget comes back.
      this.#decoder.discard();
      const unanswered = this.#slots.length;
      if (unanswered > 0) this.log.info({ unanswered }, 'peer closed before all responses were sent');
      if (this.#ctx.refusals > 0) this.log.info({ refusals: this.#ctx.refusals }, 'requests refused on this connection');
      this.#slots.length = 0;
    });
  }

  /** This connection's logger (its child logger, made now if it was not yet). */
  get log(): Logger {
    return this.#ctx.log;
  }

  /** Responses queued or being worked on. */
  get pending(): number {
    return this.#slots.length;
  }

  /** Stops reading requests; answers those already received, then closes (graceful shutdown). */
  shutdown(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#updateReading();
    this.#flush();
  }

  /** Drops the connection at once, answered or not (shutdown grace elapsed). */
  destroy(): void {
    this.#stream.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return;
    const handle = (): DecodeFailure | null => this.#decoder.push(chunk, (payload) => this.#onFrame(payload));
    let error: DecodeFailure | null;
    try {
      error = this.#opts.aroundRead ? this.#opts.aroundRead(handle) : handle();
    } catch (err) {
      // Nothing below is meant to throw (dispatch answers its own failures), but a throw here would
      // escape a socket event and take the whole process down: lose this connection instead.
      this.log.error({ err }, 'connection failed while handling a read');
      this.#stream.destroy();
      return;
    }
    // A bad payload earlier in this chunk may already have failed the stream: one error frame only.
    if (error && !this.#closing) {
      if (error.code === 'over-budget') this.#overBudget(error);
      else this.#fatal(error.code, error.message);
    }
    this.#watchFrame();
    this.#flush();
    this.#updateReading();
  }

  /** Starts the frame deadline when a frame is left incomplete; a completed frame resets it. */
  #watchFrame(): void {
    const timeout = this.#opts.frameTimeoutMs ?? 0;
    if (timeout <= 0 || this.#closing || !this.#decoder.midFrame) {
      this.#frameStartedAt = null;
      return;
    }
    this.#frameStartedAt ??= performance.now();
    this.#frameTimer ??= setTimeout(() => this.#frameDeadline(), timeout);
  }

  #frameDeadline(): void {
    this.#frameTimer = null;
    const started = this.#frameStartedAt;
    if (started === null || this.#closing || this.#stream.destroyed) return;
    const timeout = this.#opts.frameTimeoutMs!;
    const left = started + timeout - performance.now();
    // Not the client's fault while we are not reading (in-flight limit, or it is reading our
    // answers slowly): the rest of its frame may be waiting in the socket. Look again later.
    if (left > 0 || this.#readPaused) {
      this.#frameTimer = setTimeout(() => this.#frameDeadline(), Math.max(left, timeout / 10));
      return;
    }
    this.log.info({ bufferedBytes: this.#decoder.bufferedBytes, timeoutMs: timeout }, 'frame not completed in time; closing connection');
    this.#opts.onFrameTimeout?.();
    this.#closing = true;
    this.#updateReading();
    this.#flush();
  }

  /** Handles one payload; returns false when the in-flight limit is reached, to stop decoding. */
  #onFrame(payload: Buffer): boolean {
    if (this.#closing) return false;
    // A whole frame arrived: the deadline starts again with the next one.
    this.#frameStartedAt = null;
    const parsed = parseFrame(payload);
    if (!parsed.ok) {
      this.#fatal(parsed.error.code, parsed.error.message);
      return false;
    }
    let result: Response | Promise<Response>;
    try {
      result = this.#opts.dispatch(parsed.value, this.#ctx);
    } catch (err) {
      // The dispatcher is not supposed to throw; if it does, the client still gets an answer.
      this.log.error({ err }, 'dispatch threw');
      result = toErrorResponse('E_INTERNAL', 'internal error');
    }
    if (result instanceof Promise) {
      const slot: Slot = { json: null };
      this.#slots.push(slot);
      result.then(
        (res) => this.#complete(slot, res),
        (err: unknown) => {
          this.log.error({ err }, 'dispatch rejected');
          this.#complete(slot, toErrorResponse('E_INTERNAL', 'internal error'));
        },
      );
    } else {
      this.#slots.push(responseJson(result));
    }
    // [P-2.6] Exact, not per read: one read can hold hundreds of small requests.
    return this.#slots.length < this.#opts.maxInflight;
  }

  #complete(slot: Slot, res: Response): void {
    slot.json = responseJson(res);
    this.#flush();
    this.#updateReading();
  }

  /**
   * [P-1.8] No room in the shared budget for this connection's partial frame: the server is
   * holding as much unfinished input as it may. Like a slow frame [P-1.6], the connection is closed
   * without a message after the answers already owed (the client retries on a new connection
   * [P-2.7]); the frame cannot be skipped, since its bytes were never read.
   */
  #overBudget(refusal: BudgetRefusal): void {
    this.log.debug({ frameBytes: refusal.bytes }, 'no room to buffer a partial frame; closing connection');
    this.#opts.onOverBudget?.(refusal, this.#opts.ip);
    this.#closing = true;
    this.#updateReading();
  }

  /** [P-1.5] A framing error: one error frame after the responses already owed, then close. */
  #fatal(code: FrameErrorCode, message: string): void {
    this.log.warn({ error: code, reason: message }, 'framing error; closing connection');
    this.#opts.onFramingError?.(code);
    this.#slots.push(responseJson(toErrorResponse(code, message)));
    this.#closing = true;
    this.#updateReading();
  }

  #onPeerEnd(): void {
    this.#peerEnded = true;
    this.#flush();
    this.#updateReading();
  }

  /**
   * Writes every completed response at the head of the queue with one write: responses made from
   * one incoming read leave in one TLS record batch instead of one syscall each.
   */
  #flush(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    const slots = this.#slots;
    let texts: string[] | undefined;
    let ready = 0;
    for (; ready < slots.length; ready++) {
      const s = slots[ready]!;
      const json = typeof s === 'string' ? s : s.json;
      if (json === null) break;
      (texts ??= []).push(json);
    }
    if (ready > 0) {
      if (ready === slots.length) slots.length = 0;
      else slots.splice(0, ready);
      const ok = stream.write(encodeJsonFrames(texts!, ready));
      if (!ok) this.#writeBlocked = true;
    }
    const done = this.#closing || (this.#peerEnded && !this.#decoder.hasBacklog);
    if (done && this.#slots.length === 0 && !stream.writableEnded) {
      stream.end();
      this.#updateReading();
      if (!this.#peerEnded) {
        // The peer may never close its side; do not keep the socket forever.
        setTimeout(() => stream.destroy(), this.#opts.closeTimeoutMs ?? 5000).unref();
      }
    }
  }

  #updateReading(): void {
    const busy = this.#writeBlocked || this.#slots.length >= this.#opts.maxInflight;
    // Once our side has ended, read (and discard) whatever the peer still sends, so its close is
    // seen at once instead of waiting out the close timeout behind unread bytes.
    const stop = !this.#stream.writableEnded && (this.#closing || busy || this.#decoder.hasBacklog);
    if (!this.#closing && !busy && this.#decoder.hasBacklog && !this.#backlogScheduled) {
      // Requests held back by the in-flight limit: decode them on a later turn, which also lets
      // other connections go first.
      this.#backlogScheduled = true;
      setImmediate(() => {
        this.#backlogScheduled = false;
        if (!this.#stream.destroyed) this.#onData(EMPTY);
      });
    }
    if (stop && !this.#readPaused) {
      this.#readPaused = true;
      this.#stream.pause();
    } else if (!stop && this.#readPaused) {
      this.#readPaused = false;
      this.#stream.resume();
    }
  }
}
