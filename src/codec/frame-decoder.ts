import { isUtf8 } from 'node:buffer';

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
 * Incremental decoder for 4-byte big-endian length-prefixed frames [P-1.1]. Accepts any chunking:
 * a byte at a time, or many frames in one chunk. It only splits frames; JSON parsing is
 * `parseFrame`'s job so the two can be tested and fuzzed separately.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #need = -1; // payload length of the frame being read, or -1 while reading a header
  #failed: FrameError | null = null;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received towards an incomplete frame (its length prefix included). */
  get bufferedBytes(): number {
    return this.#pendingBytes + (this.#need >= 0 ? HEADER_BYTES : 0);
  }

  get failed(): FrameError | null {
    return this.#failed;
  }

  /**
   * Feeds a chunk; calls `onFrame` for each complete payload in order. Returns a FrameError when
   * the stream turned out to be malformed (frames decoded before that point were delivered).
   */
  push(chunk: Buffer, onFrame: (payload: Buffer) => void): FrameError | null {
    if (this.#failed) return this.#failed;
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    // Join chunks only once a whole header or payload is there: a client trickling tiny TLS
    // records must cost one copy per frame, not one per record (which would be quadratic).
    if (this.#pendingBytes < (this.#need < 0 ? HEADER_BYTES : this.#need)) return null;
    const buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    let off = 0;
    for (;;) {
      if (this.#need < 0) {
        if (buf.length - off < HEADER_BYTES) break;
        const len = buf.readUInt32BE(off);
        if (len === 0) return this.#fail('E_FRAME_EMPTY', 'frame length is zero'); // [P-1.2]
        if (len > this.#maxFrameBytes) {
          // [P-1.3] Refuse on the header alone: never buffer an oversize payload.
          return this.#fail('E_FRAME_TOO_LARGE', `frame length ${len} exceeds maximum ${this.#maxFrameBytes}`);
        }
        this.#need = len;
        off += HEADER_BYTES;
      }
      if (buf.length - off < this.#need) break;
      const payload = buf.subarray(off, off + this.#need);
      off += this.#need;
      this.#need = -1;
      onFrame(payload);
    }
    if (off < buf.length) {
      // Copy a small tail so the caller's (possibly large) chunk is not retained by a subarray.
      const rest = off === 0 ? buf : Buffer.from(buf.subarray(off));
      this.#pending.push(rest);
      this.#pendingBytes = rest.length;
    }
    return null;
  }

  #fail(code: FrameErrorCode, message: string): FrameError {
    this.#failed = { code, message };
    this.#need = -1;
    this.#pending = [];
    this.#pendingBytes = 0;
    return this.#failed;
  }
}

export type ParsedFrame = { ok: true; value: Record<string, unknown> } | { ok: false; error: FrameError };

/** Turns one payload into a JSON object, or the framing error that closes the connection [P-1.4]. */
export function parseFrame(payload: Buffer): ParsedFrame {
  // Buffer#toString would silently replace invalid sequences with U+FFFD; refuse them instead.
  if (!isUtf8(payload)) {
    return { ok: false, error: { code: 'E_FRAME_INVALID_UTF8', message: 'frame payload is not valid UTF-8' } };
  }
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, error: { code: 'E_FRAME_INVALID_JSON', message: 'frame payload is not valid JSON' } };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: { code: 'E_FRAME_NOT_OBJECT', message: 'frame payload must be one JSON object' } };
  }
  return { ok: true, value: value as Record<string, unknown> };
}
