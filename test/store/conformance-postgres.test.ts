import pg from 'pg';
import t from 'tap';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import type { Store } from '../../src/store/store.js';
import { pgOrSkip, type PgCluster } from '../helpers/postgres.js';
import { storeConformance, type ConformanceFactory } from './conformance.js';

/** Empties every table but the migrations' own, and restarts the ids: as good as a new database. */
async function emptyDatabase(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      `SELECT quote_ident(tablename) AS name FROM pg_tables
       WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'`,
    );
    if (rows.length > 0) await client.query(`TRUNCATE ${rows.map((r) => r.name).join(', ')} RESTART IDENTITY CASCADE`);
  } finally {
    await client.end();
  }
}

/**
 * Each store an empty database on the cluster; a peer a second store (its own pool and feed) on
 * the same one. CREATE DATABASE and the migrations cost most of a second on this machine, so a
 * database whose stores have all closed is emptied and handed to the next test instead.
 */
function postgresFactory(cluster: PgCluster): ConformanceFactory {
  const urls = new WeakMap<Store, string>();
  const openCount = new Map<string, number>();
  const spare: string[] = [];

  const openUrl = async (url: string): Promise<Store> => {
    const store = await openPostgresStore({ url, poolMax: 4 });
    openCount.set(url, (openCount.get(url) ?? 0) + 1);
    let closed: Promise<void> | undefined;
    const close = (): Promise<void> =>
      (closed ??= store.close().then(() => {
        const left = (openCount.get(url) ?? 1) - 1;
        openCount.set(url, left);
        if (left === 0) spare.push(url);
      }));
    // The store as it is, but for close, which also returns its database once nobody uses it.
    const tracked = new Proxy(store, {
      get(target, prop) {
        if (prop === 'close') return close;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    urls.set(tracked, url);
    return tracked;
  };

  return {
    open: async () => {
      const reused = spare.pop();
      if (reused === undefined) return openUrl(await cluster.createDatabase());
      await emptyDatabase(reused);
      return openUrl(reused);
    },
    openPeer: (store) => {
      const url = urls.get(store);
      if (url === undefined) throw new Error('openPeer: not a store this factory opened');
      return openUrl(url);
    },
    // Contended writers wait on row locks; a race's loser gets the ordinary answer, never busy.
    busyUnderContention: false,
    // Advisory locks: one holder per database, whichever node.
    exclusiveAcrossPeers: true,
    // Opening a store is mostly waiting for new connections (authentication, a backend process).
    jobs: 4,
  };
}

const cluster = await pgOrSkip(t, { name: 'conformance' });
if (cluster) storeConformance(t, 'postgres', postgresFactory(cluster));
