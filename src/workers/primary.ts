import { randomBytes, X509Certificate } from 'node:crypto';
import cluster from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge } from 'prom-client';
import type { Config } from '../config.js';
import { ConfigError } from '../config.js';
import type { Logger } from '../deps.js';
import { KeyRing } from '../keys/key-ring.js';
import { HOUSEKEEPING_BATCH_MS, Housekeeper } from '../ops/housekeeper.js';
import { OpsServer } from '../ops/http.js';
import { createPrometheusMetrics } from '../ops/prometheus.js';
import { PolicyLoader } from '../services/policy.js';
import { liveBounds } from '../services/session-rules.js';
import { openStore } from '../store/open.js';
import { StoreConfigError, type Store } from '../store/store.js';
import { loadTlsMaterial, type TlsMaterial } from '../tls/tls-files.js';
import type { WorkerStatus } from './messages.js';
import { Supervisor } from './supervisor.js';

/**
 * The primary of `workers: N` (N > 1): checks what every worker will need before forking any (the
 * configuration, the policy, the database and its migrations, the server key, the certificate,
 * generating the development ones once rather than N times at once), then forks N workers that
 * share the TLS port (node:cluster hands out connections round-robin) and the database. It serves
 * no client and holds no session: it keeps the workers running, forwards SIGHUP and SIGTERM to them,
 * runs housekeeping (once, not N times), and answers the health and metrics listener for the whole,
 * summing the workers' metrics. Resolves to the exit code.
 */
export async function runPrimary(config: Config, log: Logger, count: number): Promise<number> {
  let store: Store;
  let tls: TlsMaterial;
  try {
    new PolicyLoader(config.policy).load();
    store = await openStore(config, log);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StoreConfigError) {
      log.fatal({ err: err.message }, 'cannot start');
      process.stderr.write(`hellwall: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  try {
    KeyRing.open(config.dataDir, randomBytes, log);
    tls = await loadTlsMaterial(config, log);
  } catch (err) {
    log.fatal({ err: (err as Error).message }, 'cannot start');
    await store.close();
    return err instanceof ConfigError ? 2 : 1;
  }

  const idleMs = config.tokens.idleSeconds * 1000;
  // The primary's own series: the sessions gauge (counted once, off the event loop), housekeeping,
  // and the workers themselves. The workers' series are summed into these at each scrape.
  const metrics = createPrometheusMetrics({ activeSessions: () => store.countLiveSessions(liveBounds(Date.now(), idleMs)) });
  const registers = [metrics.registry];
  const restarts = new Counter({ name: 'hellwall_worker_restarts_total', help: 'Workers restarted after they died.', registers });
  let supervisor: Supervisor | undefined;
  new Gauge({
    name: 'hellwall_workers_listening',
    help: 'Worker processes serving the TLS port now (of `workers`).',
    registers,
    collect() {
      this.set(supervisor?.listening ?? 0);
    },
  });
  const housekeeper = new Housekeeper({
    store,
    clock: Date.now,
    log,
    metrics,
    intervalMs: config.housekeeping.intervalSeconds * 1000,
    maxBatchMs: HOUSEKEEPING_BATCH_MS,
    policy: {
      idleMs,
      keepRevokedMs: config.housekeeping.keepRevokedSeconds * 1000,
      keepAuditMs: config.audit.retentionDays * 86_400_000,
      batch: config.housekeeping.batchSize,
    },
  });

  let exitCode = 0;
  let stop: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });

  // Workers get the same configuration, less what the primary does for them.
  supervisor = new Supervisor({
    count,
    fork: () => cluster.fork({ HELLWALL_OPS_ENABLED: 'false', HELLWALL_HOUSEKEEPING_INTERVAL: '0' }),
    log,
    onListening: (port) => {
      log.info({ host: config.host, port, workers: count }, 'all workers listening');
      housekeeper.start();
    },
    onGiveUp: () => {
      exitCode = 1;
      stop('workers failing');
    },
    onRestart: () => restarts.inc(),
  });

  let ops: OpsServer | undefined;
  if (config.ops.enabled) {
    const workers = supervisor;
    ops = new OpsServer({
      log,
      metrics: {
        contentType: metrics.contentType,
        async render() {
          const answers = (await workers.ask('metrics')) as Awaited<ReturnType<typeof metrics.registry.getMetricsAsJSON>>[];
          const own = await metrics.registry.getMetricsAsJSON();
          return AggregatorRegistry.aggregate([own, ...answers]).metrics();
        },
      },
      checks: [
        {
          name: 'database',
          check: async () => {
            await store.ping();
            return null;
          },
        },
        {
          name: 'certificate',
          check: () => {
            const notAfter = Date.parse(new X509Certificate(tls.cert).validTo);
            return notAfter > Date.now() ? null : `expired ${new Date(notAfter).toISOString()}`;
          },
        },
        {
          name: 'workers',
          check: () =>
            workers.stopping ? 'shutting down' : workers.listening === count ? null : `${workers.listening} of ${count} workers listening`,
        },
      ],
      details: async () => ({ workers: (await workers.ask('status')) as WorkerStatus[] }),
    });
    try {
      const address = await ops.listen(config.ops.port, config.ops.host);
      log.info({ host: address.address, port: address.port }, 'health and metrics listening');
    } catch (err) {
      log.fatal({ err: (err as Error).message }, 'cannot start');
      await store.close();
      return 1;
    }
  }

  const reload = (): void => {
    log.info({ signal: 'SIGHUP', workers: count }, 'reloading');
    supervisor.broadcast('reload');
    // The primary's own copy of the certificate, for /readyz.
    loadTlsMaterial(config, log).then(
      (next) => {
        tls = next;
      },
      (err: unknown) => log.error({ err: (err as Error).message }, 'certificate reload failed; the previous certificate stays in use'),
    );
  };
  const onSignal = (signal: string): void => stop(signal);
  process.on('SIGHUP', reload);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  log.info({ workers: count, pid: process.pid }, 'starting workers');
  supervisor.start();

  const reason = await stopped;
  process.off('SIGHUP', reload);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  log.info({ signal: reason, graceMs: config.shutdownGraceMs, workers: count }, 'shutting down');
  // A second signal means "now", as for a single process.
  const now = (): void => {
    supervisor.kill();
    process.exit(1);
  };
  process.once('SIGTERM', now);
  process.once('SIGINT', now);
  await housekeeper.stop();
  const clean = await supervisor.stop(config.shutdownGraceMs + 5000);
  await ops?.close();
  await store.close();
  log.info({ clean }, 'hellwall stopped');
  return exitCode !== 0 ? exitCode : clean ? 0 : 1;
}
