import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Compares two strings in time that depends on neither's content nor length: both are hashed to
 * 32 bytes first, because timingSafeEqual itself needs equal lengths and would leak them.
 */
export function constantEquals(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** Equal-length buffers compared in constant time; unequal lengths are simply unequal. */
export function constantEqualsBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
