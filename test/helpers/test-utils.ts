import { HEADER_BYTES } from '../../src/codec/frame-decoder.js';

/** mulberry32: a tiny seeded PRNG, so every "random" case is reproducible from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** A bare 4-byte length prefix, for frames that are cut short or lie about their length. */
export const header = (len: number): Buffer => {
  const b = Buffer.alloc(HEADER_BYTES);
  b.writeUInt32BE(len >>> 0, 0);
  return b;
};

/** `p`, or 'timeout' after `ms`: for waiting on something that must happen, without hanging. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
