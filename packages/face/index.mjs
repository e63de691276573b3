// The entry the server imports (dynamically, by path: the core install does not carry this
// package). Importing it loads nothing heavy; `check()` says whether `npm run face:install` ran.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The worker script the pool starts, one engine per thread. */
export const workerUrl = new URL('./worker.mjs', import.meta.url);

/** The images the package ships (group photos; the threshold measurement cuts faces out of them). */
export function samplePaths() {
  const dir = require.resolve('@vladmandic/face-api/package.json').replace(/package\.json$/, 'demo/');
  return [1, 2, 3, 4, 5, 6].map((n) => `${dir}sample${n}.jpg`);
}

/**
 * Throws (with the install command in the message) when the dependencies are not installed;
 * otherwise answers their versions.
 */
export function check() {
  const versions = {};
  for (const name of ['@vladmandic/face-api', '@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', 'jpeg-js']) {
    try {
      versions[name] = require(`${name}/package.json`).version;
    } catch {
      throw new Error(`${name} is not installed in packages/face: run \`npm run face:install\``);
    }
  }
  return versions;
}
