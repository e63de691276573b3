import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.js';
import type { Logger } from '../deps.js';
import { openSqliteStore } from './sqlite-store.js';
import { StoreConfigError, type Store } from './store.js';

/** The SQLite file's name in the data directory (the embedded default). */
export const DATABASE_FILE = 'hellwall.db';

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

/** The URL with its password replaced, for logs and messages. */
export function maskUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^@/?#]*@/i, '$1***@');
}

/** What `store.url` names, for logs: the backend and where, never a password. */
export function describeStore(config: Pick<Config, 'dataDir' | 'store'>): string {
  return config.store.url ? maskUrl(config.store.url) : path.join(config.dataDir, DATABASE_FILE);
}

/**
 * Opens the store `store.url` names: empty, the SQLite file in the data directory; `postgres://…`,
 * PostgreSQL (loaded only then, so the embedded default never loads the driver). Throws
 * StoreConfigError, naming the setting and the cause, when it cannot.
 */
export async function openStore(config: Pick<Config, 'dataDir' | 'store'>, log?: Logger): Promise<Store> {
  const { url } = config.store;
  if (!url) {
    // The first start on a fresh machine: the data directory does not exist yet (0700: it holds
    // the server key and password hashes; the key ring makes it the same way).
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    return openSqliteStore(path.join(config.dataDir, DATABASE_FILE), log);
  }
  if (!POSTGRES_URL.test(url)) {
    throw new StoreConfigError(`store.url (HELLWALL_STORE_URL) must be empty for SQLite or a postgres:// URL, not ${maskUrl(url)}`);
  }
  const { openPostgresStore } = await import('./postgres-store.js');
  return openPostgresStore({
    url,
    poolMax: config.store.poolMax,
    connectTimeoutMs: config.store.connectTimeoutMs,
    statementTimeoutMs: config.store.statementTimeoutMs,
    ...(log && { log }),
  });
}
