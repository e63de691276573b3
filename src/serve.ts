import cluster from 'node:cluster';
import os from 'node:os';
import { createApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import type { Logger } from './deps.js';
import { createLogger } from './log.js';
import { StoreConfigError } from './store/store.js';
import { runPrimary } from './workers/primary.js';
import { WorkerBucketPeers } from './workers/bucket-peers.js';
import { WorkerChannel } from './workers/worker-channel.js';

// `hellwall serve` and `npm start` (src/main.ts) both run this: one way to start the service.

/**
 * Runs the service until SIGTERM/SIGINT; resolves to the process exit code. With `workers` above 1
 * (0: one per core) this process becomes the primary of that many workers (src/workers/), each of
 * which runs this same function again and serves as a single process would.
 */
export async function serve(env: NodeJS.ProcessEnv): Promise<number> {
  let config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  if (cluster.isWorker) return runOne(config, log.child({ worker: cluster.worker!.id, pid: process.pid }), true);
  const workers = config.workers === 0 ? os.availableParallelism() : config.workers;
  if (workers > 1) return runPrimary(config, log.child({ primary: process.pid }), workers);
  return runOne(config, log, false);
}

/** The service in this process: alone, or as one worker of a primary (`asWorker`). */
async function runOne(config: Config, log: Logger, asWorker: boolean): Promise<number> {
  // A worker shares the per-address rate limits with its siblings, through the primary.
  const peers = asWorker ? new WorkerBucketPeers() : undefined;
  let app;
  try {
    app = await createApp({ config, log, ...(peers && { bucketPeers: peers }) });
  } catch (err) {
    // A malformed policy file (PolicyError is a ConfigError) stops start-up like a bad option; so
    // does a database that cannot be opened as configured (wrong URL, refused password, newer schema).
    if (err instanceof ConfigError || err instanceof StoreConfigError) {
      log.fatal({ err: err.message }, 'cannot start');
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let port: number;
  try {
    port = (await app.listen()).address.port;
  } catch (err) {
    // e.g. EADDRINUSE, or an unreadable certificate: one clear line, then a clean exit.
    log.fatal({ err: (err as Error).message }, 'cannot start');
    await app.close();
    return 1;
  }
  // SIGHUP re-reads the certificate (and whatever else can change at run time) without a restart.
  // A worker hears it from its primary (and directly, when the whole process group is signalled).
  const reload = (): void => {
    log.info({ signal: 'SIGHUP' }, 'reloading');
    void app.reload();
  };
  process.on('SIGHUP', reload);
  let channel: WorkerChannel | undefined;
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down');
      // A second signal means "now": the operator has given up waiting for the drain.
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    if (asWorker) {
      channel = new WorkerChannel(app, { stop, reload });
      channel.listening(port);
    }
  });
  process.off('SIGHUP', reload);
  // close() bounds each step by the grace; this is the backstop if something still hangs.
  setTimeout(() => {
    log.error({ graceMs: config.shutdownGraceMs }, 'shutdown did not finish in time; exiting');
    process.exit(1);
  }, config.shutdownGraceMs + 5000).unref();
  await app.close();
  channel?.close();
  peers?.close();
  return 0;
}
