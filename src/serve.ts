import { createApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './log.js';
import { StoreConfigError } from './store/store.js';

// `hellwall serve` and `npm start` (src/main.ts) both run this: one way to start the service.

/** Runs the service until SIGTERM/SIGINT; resolves to the process exit code. */
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
  let app;
  try {
    app = await createApp({ config, log });
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
  try {
    await app.listen();
  } catch (err) {
    // e.g. EADDRINUSE, or an unreadable certificate: one clear line, then a clean exit.
    log.fatal({ err: (err as Error).message }, 'cannot start');
    await app.close();
    return 1;
  }
  // SIGHUP re-reads the certificate (and whatever else can change at run time) without a restart.
  const reload = (): void => {
    log.info({ signal: 'SIGHUP' }, 'reloading');
    void app.reload();
  };
  process.on('SIGHUP', reload);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down');
      // A second signal means "now": the operator has given up waiting for the drain.
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(1));
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  process.off('SIGHUP', reload);
  // close() bounds each step by the grace; this is the backstop if something still hangs.
  setTimeout(() => {
    log.error({ graceMs: config.shutdownGraceMs }, 'shutdown did not finish in time; exiting');
    process.exit(1);
  }, config.shutdownGraceMs + 5000).unref();
  await app.close();
  return 0;
}
