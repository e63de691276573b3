import { isAscii, isUtf8 } from 'node:buffer';

export const HEADER_BYTES = 4;

export type FrameErrorCode =
  | 'E_FRAME_EMPTY'
  | 'E_FRAME_TOO_LARGE'
  | 'E_FRAME_INVALID_UTF8'
  | 'E_FRAME_INVALID_JSON'
  | 'E_FRAME_NOT_OBJECT';

/** A framing failure. After one, the stream is unusable: the decoder refuses further input. */
export interface FrameError {
  readonly code: FrameErrorCode;
  readonly message: string;
}

/**
 * Where a decoder accounts the memory it holds for partial frames (the server's
 * `maxBufferedBytes`, shared by every connection). `reserve` answers false when there is no room.
 */
export interface FrameBudget {
  reserve(bytes: number): boolean;
  release(bytes: number): void;
}

/**
 * A partial frame the budget had no room for. Not a protocol error (the client sent nothing
 * wrong, and is told nothing): the stream is unusable all the same, since the frame cannot be
 * read and its end is not known.
 */
export interface BudgetRefusal {
  readonly code: 'over-budget';
  /** The frame's announced length: what could not be reserved. */
  readonly bytes: number;
  readonly message: string;
}

export type DecodeFailure = FrameError | BudgetRefusal;

/**
 * Incremental decoder for 4-byte big-endian length-prefixed frames [P-1.1]. Accepts any chunking:
 * a byte at a time, or many frames in one chunk. It only splits frames; JSON parsing is
 * `parseFrame`'s job so the two can be tested and fuzzed separately.
 *
 * Memory is fixed per frame: once a header is read, exactly the payload's size is allocated and
 * incoming pieces are copied into it. (Keeping the pieces instead costs a Buffer per piece: a
 * client trickling one-byte TLS records would make the server hold ~20x what it sent.) A frame
 * that arrives whole in one chunk is handed out without any copy. With a `budget`, that allocation
 * must fit it first, and is given back when the frame completes, the decoder fails, or `discard`.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  /** A length prefix split across chunks, accumulated as a number (no buffer held per decoder). */
  #headValue = 0;
  #headFilled = 0;
  #body: Buffer | null = null;
  #bodyFilled = 0;
  /** Input not decoded yet because the consumer asked to stop (bounded by one chunk). */
  #backlog: Buffer | null = null;
  #failed: DecodeFailure | null = null;
  readonly #budget: FrameBudget | null;

  constructor(maxFrameBytes: number, budget: FrameBudget | null = null) {
    this.#maxFrameBytes = maxFrameBytes;
    this.#budget = budget;
  }

  /** Bytes received towards an incomplete frame (its length prefix included), plus any backlog. */
  get bufferedBytes(): number {
    return this.#headFilled + (this.#body ? HEADER_BYTES + this.#bodyFilled : 0) + (this.#backlog?.length ?? 0);
  }

  /** True while part of a frame (some of its length prefix or payload) has arrived but not all of it. */
  get midFrame(): boolean {
    return this.#headFilled > 0 || this.#body !== null;
  }

  /** True when input is held back because `onFrame` asked to stop; `push(EMPTY)` resumes it. */
  get hasBacklog(): boolean {
    return this.#backlog !== null;
  }

  get failed(): DecodeFailure | null {
    return this.#failed;
  }

  /** Drops a partial frame and any backlog, giving their memory back (the stream has closed). */
  discard(): void {
    this.#drop();
    this.#headFilled = 0;
    this.#headValue = 0;
    this.#backlog = null;
  }

  /**
   * Feeds a chunk; calls `onFrame` for each complete payload in order. When `onFrame` returns
   * false, decoding stops and the rest of the input waits for the next `push` (which may be an
   * empty chunk). The payload is only valid during the call. Returns a FrameError when the stream
   * turned out to be malformed, or a BudgetRefusal when a partial frame did not fit the budget
   * (frames decoded before that point were delivered).
   */
  push(chunk: Buffer, onFrame: (payload: Buffer) => unknown): DecodeFailure | null {
    if (this.#failed) return this.#failed;
    let buf = chunk;
    if (this.#backlog) {
      buf = chunk.length > 0 ? Buffer.concat([this.#backlog, chunk]) : this.#backlog;
      this.#backlog = null;
    }
    let off = 0;
    while (off < buf.length) {
      if (this.#body === null) {
        let len: number;
        if (this.#headFilled === 0 && buf.length - off >= HEADER_BYTES) {
          len = buf.readUInt32BE(off);
          off += HEADER_BYTES;
        } else {
          while (this.#headFilled < HEADER_BYTES && off < buf.length) {
            // Big-endian; multiplication keeps the top byte from turning the value negative.
            this.#headValue = this.#headValue * 256 + buf[off++]!;
            this.#headFilled++;
          }
          if (this.#headFilled < HEADER_BYTES) break;
          this.#headFilled = 0;
          len = this.#headValue;
          this.#headValue = 0;
        }
        if (len === 0) return this.#fail('E_FRAME_EMPTY', 'frame length is zero'); // [P-1.2]
        if (len > this.#maxFrameBytes) {
          // [P-1.3] Refuse on the header alone: never buffer an oversize payload.
          return this.#fail('E_FRAME_TOO_LARGE', `frame length ${len} exceeds maximum ${this.#maxFrameBytes}`);
        }
        if (buf.length - off >= len) {
          const payload = buf.subarray(off, off + len);
          off += len;
          if (onFrame(payload) === false) return this.#hold(buf, off);
          continue;
        }
        if (this.#budget && !this.#budget.reserve(len)) {
          this.#failed = { code: 'over-budget', bytes: len, message: `no room to buffer a partial frame of ${len} bytes` };
          this.#backlog = null;
          return this.#failed;
        }
        this.#body = Buffer.allocUnsafe(len);
        this.#bodyFilled = 0;
      }
      const body = this.#body;
      const n = Math.min(body.length - this.#bodyFilled, buf.length - off);
      buf.copy(body, this.#bodyFilled, off, off + n);
      this.#bodyFilled += n;
      off += n;
      if (this.#bodyFilled < body.length) break;
      this.#drop();
      if (onFrame(body) === false) return this.#hold(buf, off);
    }
    return null;
  }

  #hold(buf: Buffer, off: number): null {
    // A copy, so the caller's chunk is not retained.
    if (off < buf.length) this.#backlog = Buffer.from(buf.subarray(off));
    return null;
  }

  #fail(code: FrameErrorCode, message: string): FrameError {
    const error = { code, message };
    this.#failed = error;
    this.discard();
    return error;
  }

  /** Lets go of the partial frame's buffer, and of its share of the budget. */
  #drop(): void {
    if (this.#body === null) return;
    this.#budget?.release(this.#body.length);
    this.#body = null;
  }
}

export const EMPTY = Buffer.alloc(0);

export type ParsedFrame = { ok: true; value: Record<string, unknown> } | { ok: false; error: FrameError };

/** Turns one payload into a JSON object, or the framing error that closes the connection [P-1.4]. */
export function parseFrame(payload: Buffer): ParsedFrame {
  // Nearly every request is ASCII, which is UTF-8 and decodes byte for byte (latin1 is the cheap
  // decoder for that). Otherwise: Buffer#toString would silently replace invalid sequences with
  // U+FFFD; refuse them instead.
  const ascii = isAscii(payload);
  if (!ascii && !isUtf8(payload)) {
    return { ok: false, error: { code: 'E_FRAME_INVALID_UTF8', message: 'frame payload is not valid UTF-8' } };
  }
  let value: unknown;
  try {
    value = JSON.parse(payload.toString(ascii ? 'latin1' : 'utf8'));
  } catch {
    return { ok: false, error: { code: 'E_FRAME_INVALID_JSON', message: 'frame payload is not valid JSON' } };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: { code: 'E_FRAME_NOT_OBJECT', message: 'frame payload must be one JSON object' } };
  }
  return { ok: true, value: value as Record<string, unknown> };
}
