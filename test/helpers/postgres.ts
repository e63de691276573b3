import type { Test } from 'tap';
import { findPostgresBinDir, startPostgres as startCluster, type PgCluster, type PgOptions } from '../../src/bench/postgres-cluster.js';

// The server itself is src/bench/postgres-cluster.ts (the benchmark starts one too); this adds
// what tests need on top: HELLWALL_REQUIRE_POSTGRES and tap's skip and teardown.
export { PG_ROLE, type PgCluster, type PgOptions } from '../../src/bench/postgres-cluster.js';

/**
 * A new cluster in a temp dir on 127.0.0.1 and a free port, run as an unprivileged user; or
 * undefined when no PostgreSQL binaries are found (tests then skip, unless
 * HELLWALL_REQUIRE_POSTGRES=1, then it throws).
 */
export async function startPostgres(opts: PgOptions = {}): Promise<PgCluster | undefined> {
  if (!findPostgresBinDir() && process.env.HELLWALL_REQUIRE_POSTGRES === '1') {
    throw new Error('HELLWALL_REQUIRE_POSTGRES=1 but no PostgreSQL under /usr/lib/postgresql/*/bin (apt-get install postgresql)');
  }
  return startCluster(opts);
}

/**
 * For tap: `const pg = await pgOrSkip(t)`, then `if (!pg) return`. Skips the test (plan 0 with
 * the reason) when PostgreSQL is not installed, and destroys the cluster at the test's teardown.
 */
export async function pgOrSkip(t: Test, opts: PgOptions = {}): Promise<PgCluster | undefined> {
  const cluster = await startPostgres(opts);
  if (!cluster) {
    t.plan(0, 'PostgreSQL is not installed (/usr/lib/postgresql/*/bin); set HELLWALL_REQUIRE_POSTGRES=1 to fail instead');
    return undefined;
  }
  t.teardown(() => cluster.destroy());
  return cluster;
}
