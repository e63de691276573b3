import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository's root: the nearest folder above this file that holds `tsconfig.json` and
 * `src/`. Tests run compiled from dist-test/test/ (`npm test` compiles them once, see
 * test/tsconfig.json), where `../..` is dist-test/, not the checkout, so paths to the sources,
 * README, scripts and protocol start here.
 */
function findRoot(from: string): string {
  for (let dir = from; ; ) {
    if (existsSync(path.join(dir, 'tsconfig.json')) && existsSync(path.join(dir, 'src'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no repository root above ${from}`);
    dir = up;
  }
}

export const ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));
