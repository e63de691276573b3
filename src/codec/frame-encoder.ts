import { HEADER_BYTES } from './frame-decoder.js';

/** Encodes one message as a length-prefixed frame [P-1.1]. */
export function encodeFrame(message: unknown): Buffer {
  const json = JSON.stringify(message);
  const len = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(HEADER_BYTES + len);
  frame.writeUInt32BE(len, 0);
  frame.write(json, HEADER_BYTES, 'utf8');
  return frame;
}

/**
 * Frames several JSON texts (`texts[0..count)`) into one buffer, each with its length prefix
 * [P-1.1]: the answers a connection sends together cost one allocation and one write.
 */
export function encodeJsonFrames(texts: readonly string[], count: number): Buffer {
  let total = 0;
  for (let i = 0; i < count; i++) total += HEADER_BYTES + Buffer.byteLength(texts[i]!);
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (let i = 0; i < count; i++) {
    const written = out.write(texts[i]!, off + HEADER_BYTES, 'utf8');
    out.writeUInt32BE(written, off);
    off += HEADER_BYTES + written;
  }
  return out;
}

/** Frames a raw payload as is; for tests and conformance vectors that need bytes that are not JSON. */
export function frameBytes(payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}
