/** Length of the descriptor face-api's recognition net computes. */
export const DESCRIPTOR_LENGTH = 128;

/** Euclidean distance between two descriptors: 0 for identical, about 0.2-0.4 for one person. */
export function descriptorDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error('descriptors of different lengths');
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    sum += d * d;
  }
  return Math.sqrt(sum);
}

/**
 * Whether two descriptors are one face at `threshold`: strictly closer than it. The distance
 * itself never leaves the server (it would let a client climb towards the template).
 */
export function sameFace(a: Float32Array, b: Float32Array, threshold: number): boolean {
  return descriptorDistance(a, b) < threshold;
}

/** The template as stored (sealed): the descriptor's little-endian float32s. */
export function encodeTemplate(d: Float32Array): Buffer {
  if (d.length !== DESCRIPTOR_LENGTH) throw new Error(`a face descriptor has ${DESCRIPTOR_LENGTH} values, not ${d.length}`);
  const out = Buffer.alloc(DESCRIPTOR_LENGTH * 4);
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) out.writeFloatLE(d[i]!, i * 4);
  return out;
}

/** The inverse of encodeTemplate; undefined for anything of the wrong size. */
export function decodeTemplate(b: Buffer): Float32Array | undefined {
  if (b.length !== DESCRIPTOR_LENGTH * 4) return undefined;
  const out = new Float32Array(DESCRIPTOR_LENGTH);
  for (let i = 0; i < DESCRIPTOR_LENGTH; i++) out[i] = b.readFloatLE(i * 4);
  return out;
}
