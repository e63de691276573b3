// Shared by the face tests (test/face/): whether packages/face is installed, its sample images cut
// into single faces, and a pool of engines to run them through.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { defaultFacePackageDir } from '../../src/services/face-engine.js';
import { FacePool } from '../../src/services/face-pool.js';
import { FACE_MAX_SIDE, FACE_MIN_CONFIDENCE } from '../../src/services/face-service.js';

export const FACE_DIR = defaultFacePackageDir();

/**
 * Why the face tests cannot run here (packages/face not installed), or false. With
 * HELLWALL_REQUIRE_FACE=1 (CI installs the package) a missing package is a failure, not a skip:
 * `requireFace` says so.
 */
export function faceSkip(): string | false {
  if (existsSync(path.join(FACE_DIR, 'node_modules', '@vladmandic', 'face-api', 'package.json'))) return false;
  return 'packages/face is not installed (run `npm run face:install`); set HELLWALL_REQUIRE_FACE=1 to make this a failure';
}

export const requireFace = process.env.HELLWALL_REQUIRE_FACE === '1';

/** An image as RGB pixels (packages/face/augment.mjs). */
export interface Rgb {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** packages/face/augment.mjs: test tooling over RGB pixels. */
export interface Augment {
  decodeJpeg(bytes: Uint8Array): Rgb;
  encodeJpeg(img: Rgb, quality?: number): Buffer;
  crop(img: Rgb, x: number, y: number, width: number, height: number): Rgb;
  scale(img: Rgb, k: number): Rgb;
  brightness(img: Rgb, k: number): Rgb;
  rotate(img: Rgb, degrees: number): Rgb;
}

export async function loadAugment(): Promise<Augment> {
  return (await import(pathToFileURL(path.join(FACE_DIR, 'augment.mjs')).href)) as Augment;
}

/**
 * The faces in the package's demo/sample1..6.jpg (group photos, 1920 px wide), as face-api's own
 * detector boxes them ([x, y, width, height], from the pool's `faces`): six photos, 22 people.
 * Kept here so that the tests do not spend 2 s per photo finding them again; sampleBoxes.test
 * checks them against the detector.
 */
export const SAMPLE_BOXES: Readonly<Record<number, ReadonlyArray<readonly [number, number, number, number]>>> = {
  1: [[414, 355, 178, 239], [839, 420, 187, 227], [1476, 200, 203, 240]],
  2: [[1447, 154, 193, 244], [900, 219, 153, 235], [361, 127, 154, 260]],
  3: [[586, 329, 198, 271], [1514, 291, 170, 282], [1075, 215, 220, 297]],
  4: [[665, 52, 186, 259], [257, 184, 162, 246], [989, 180, 171, 227], [1277, 143, 146, 244]],
  5: [[788, 109, 156, 211], [1113, 198, 159, 236], [1407, 389, 165, 270], [598, 415, 166, 248], [377, 861, 172, 299]],
  6: [[680, 322, 159, 307], [1180, 306, 187, 279], [1488, 264, 211, 294], [250, 467, 209, 292]],
};

export function samplePath(n: number): string {
  return path.join(FACE_DIR, 'node_modules', '@vladmandic', 'face-api', 'demo', `sample${n}.jpg`);
}

/**
 * One person's face cut out of a sample photo, with context around it: the box grown by `margin`
 * of its size on every side (the detector needs some head and shoulders to find a face again).
 */
export function cutFace(aug: Augment, photo: Rgb, box: readonly [number, number, number, number], margin = 0.6): Rgb {
  const [x, y, w, h] = box;
  return aug.crop(photo, x - w * margin, y - h * margin, w * (1 + 2 * margin), h * (1 + 2 * margin));
}

/** Decodes the sample photos once (about 1 s each in pure JS). */
export function decodeSamples(aug: Augment, which: readonly number[]): Map<number, Rgb> {
  return new Map(which.map((n) => [n, aug.decodeJpeg(readFileSync(samplePath(n)))]));
}

/** Base64 of a JPEG small enough for the default 64 KiB frame. */
export function jpeg64(aug: Augment, img: Rgb): string {
  const b64 = aug.encodeJpeg(img, 75).toString('base64');
  if (b64.length > 60_000) throw new Error(`test image too large for a frame: ${b64.length}`);
  return b64;
}

export const TEST_ENGINE = { minConfidence: FACE_MIN_CONFIDENCE, minFacePixels: 80, maxPixels: 4_000_000, maxSide: FACE_MAX_SIDE } as const;

/** A pool on the installed package, closed when the test ends. */
export async function startPool(
  t: { teardown(fn: () => unknown): void },
  opts: { workers?: number; queueMax?: number } = {},
): Promise<FacePool> {
  const { workerUrl } = (await import(pathToFileURL(path.join(FACE_DIR, 'index.mjs')).href)) as { workerUrl: URL };
  const silent = { error() {}, warn() {}, info() {}, debug() {} } as unknown as Parameters<typeof FacePool.start>[0]['log'];
  const pool = await FacePool.start({ workerUrl, workers: opts.workers ?? 2, queueMax: opts.queueMax ?? 100, engine: TEST_ENGINE, log: silent });
  t.teardown(() => pool.close());
  return pool;
}
