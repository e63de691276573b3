import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from '../deps.js';
import { ServiceError } from '../errors.js';
import { FacePool, type DescribeResult, type FaceEngineOptions } from './face-pool.js';

/** packages/face in this checkout: two levels above this file, in src/ and in dist/ alike. */
export function defaultFacePackageDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'packages', 'face');
}

/** What packages/face/index.mjs exports (it is plain JS, imported by path). */
interface FacePackage {
  readonly workerUrl: URL;
  check(): Record<string, string>;
}

/**
 * Imports packages/face by path and checks that its dependencies are installed; the reason it
 * cannot, otherwise. The core install never carries the package (~330 MB), so its absence is a
 * normal state, not a fault.
 */
export async function loadFacePackage(dir: string): Promise<{ ok: true; pkg: FacePackage; versions: Record<string, string> } | { ok: false; reason: string }> {
  const entry = path.join(dir, 'index.mjs');
  if (!existsSync(entry)) return { ok: false, reason: `${entry} not found` };
  try {
    const pkg = (await import(pathToFileURL(entry).href)) as FacePackage;
    return { ok: true, pkg, versions: pkg.check() };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

export interface FaceEngineConfig {
  readonly packageDir: string;
  readonly workers: number;
  readonly queueMax: number;
  readonly engine: FaceEngineOptions;
}

/** What the face factor needs of the engine; tests may pass their own. */
export interface FaceEngine {
  /** Loads the package and starts the workers; false (and a log line saying why) when it cannot. */
  start(): Promise<boolean>;
  describe(bytes: Uint8Array): Promise<DescribeResult>;
  close(): Promise<void>;
}

/**
 * The face engine as the server runs it: packages/face loaded on first use (or at `start`), its
 * worker pool started once. While the package is missing every call refuses with
 * `face-unavailable` (E_FACE_UNAVAILABLE), and the server runs on.
 */
export class FaceEngineLoader implements FaceEngine {
  readonly #config: FaceEngineConfig;
  readonly #log: Logger;
  #pool: Promise<FacePool | null> | undefined;
  #closed = false;

  constructor(config: FaceEngineConfig, log: Logger) {
    this.#config = config;
    this.#log = log;
  }

  async start(): Promise<boolean> {
    return (await this.#started()) !== null;
  }

  async describe(bytes: Uint8Array): Promise<DescribeResult> {
    const pool = await this.#started();
    if (!pool) throw new ServiceError('face-unavailable', 'the face factor is not available on this server');
    return pool.describe(bytes);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pool = await this.#pool;
    await pool?.close();
  }

  #started(): Promise<FacePool | null> {
    if (this.#closed) return Promise.resolve(null);
    this.#pool ??= (async () => {
      const loaded = await loadFacePackage(this.#config.packageDir);
      if (!loaded.ok) {
        this.#log.error({ packageDir: this.#config.packageDir, reason: loaded.reason }, 'face factor unavailable: install it with `npm run face:install`');
        return null;
      }
      try {
        const pool = await FacePool.start({
          workerUrl: loaded.pkg.workerUrl,
          workers: this.#config.workers,
          queueMax: this.#config.queueMax,
          engine: this.#config.engine,
          log: this.#log,
        });
        this.#log.info({ versions: loaded.versions, workers: this.#config.workers, queueMax: this.#config.queueMax }, 'face factor ready');
        return pool;
      } catch (err) {
        this.#log.error({ err: (err as Error).message }, 'face factor unavailable: its engine did not start');
        return null;
      }
    })();
    return this.#pool;
  }
}
