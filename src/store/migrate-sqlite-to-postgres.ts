import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { Logger } from '../deps.js';
import { MIGRATIONS } from './migrations.js';
import { DATABASE_FILE, maskUrl } from './open.js';
import { POSTGRES_SCHEMA_VERSION } from './postgres-migrations.js';
import { openPostgresStore } from './postgres-store.js';
import { StoreConfigError } from './store.js';

/**
 * The tables copied, parents before children (the foreign keys are checked row by row). Both
 * databases must hold exactly these: a table only one of them has would be left behind silently.
 */
export const MIGRATED_TABLES = ['users', 'passcodes', 'sessions', 'retired_tokens', 'audit', 'counters', 'user_factors', 'user_secrets', 'recovery_codes', 'recovery_passcodes', 'devices', 'device_addresses'] as const;
export type MigratedTable = (typeof MIGRATED_TABLES)[number];

/**
 * Tables left behind on purpose. `nodes` says which servers run now and the key each signs with:
 * none runs on the source (the copy requires it), so its rows are stale, and would make a node on
 * the new database look alive; every node registers itself there when it starts.
 */
export const NOT_COPIED_TABLES: readonly string[] = ['nodes'];

/** Tables whose ids the database generates (SQLite's rowids, PostgreSQL's identity columns). */
const IDENTITY_TABLES: readonly MigratedTable[] = ['users', 'sessions', 'audit'];

/**
 * Ids the new database must never hand out again, beyond each table's own: those the audit trail
 * (and a retired token) still names, as SQLite's own counter does since schema 6.
 */
const NAMED_ELSEWHERE: Readonly<Partial<Record<MigratedTable, ReadonlyArray<readonly [MigratedTable, string]>>>> = {
  users: [['audit', 'user_id']],
  sessions: [
    ['audit', 'session_id'],
    ['retired_tokens', 'session_id'],
  ],
};

// PostgreSQL accepts at most 65,535 parameters per statement; rows go in batches well below that.
const MAX_PARAMS = 30_000;
const MAX_BATCH_ROWS = 1000;

/** Why `store migrate` refused, or failed without changing anything. */
export type StoreMigrateRefusal =
  /** No SQLite database in the data directory. */
  | 'source-missing'
  /** Another process (a running server, a CLI command) has the SQLite database open. */
  | 'source-in-use'
  /** The SQLite database is not at the schema version this code writes. */
  | 'source-schema'
  /** The two schemas do not hold the same tables and columns (a Hellwall defect, not the operator's). */
  | 'schema-mismatch'
  /** The PostgreSQL database already holds rows. */
  | 'target-not-empty'
  /** The copy failed; its transaction was rolled back and the target is as it was. */
  | 'copy-failed'
  /** COMMIT itself failed: the target is either empty or complete, and must be looked at. */
  | 'commit-unknown';

export class StoreMigrateError extends Error {
  override name = 'StoreMigrateError';
  constructor(
    readonly code: StoreMigrateRefusal,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface MigrateOptions {
  /** The data directory whose `hellwall.db` is copied (its key ring stays where it is). */
  readonly dataDir: string;
  /** The PostgreSQL database: `postgres://…`, TLS parameters as for `store.url`. */
  readonly url: string;
  /** Check everything and count the rows, but create and copy nothing. */
  readonly dryRun?: boolean;
  /** How long to wait for the database (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  readonly log?: Logger;
}

export interface TableCount {
  readonly table: MigratedTable;
  readonly sqlite: number;
  /** Rows in the target after the copy (before it, in a dry run: 0). */
  readonly postgres: number;
}

export interface MigrateReport {
  /** The SQLite file. */
  readonly source: string;
  /** The PostgreSQL URL, its password masked. */
  readonly target: string;
  readonly sqliteSchemaVersion: number;
  /** The target's schema version after the copy; in a dry run, the version it would be brought to. */
  readonly postgresSchemaVersion: number;
  readonly tables: readonly TableCount[];
  /** Per table with generated ids: the first id the target hands out after the copy. */
  readonly nextIds: Readonly<Record<string, number>>;
  /** False for a dry run: nothing was written. */
  readonly copied: boolean;
  /**
   * A dry run found the SQLite database open in another process (a running server): the copy
   * itself will refuse until it is stopped.
   */
  readonly sourceInUse: boolean;
}

const POSTGRES_URL = /^postgres(ql)?:\/\//i;

/** A driver's message with the URL's password taken out, whatever the driver put in it. */
function scrub(message: string, url: string): string {
  let password = '';
  try {
    password = decodeURIComponent(new URL(url).password);
  } catch {
    // Not a URL: nothing to scrub beyond maskUrl.
  }
  const masked = message.split(url).join(maskUrl(url));
  return password.length >= 3 ? masked.split(password).join('***') : masked;
}

/** The message, with PostgreSQL's detail (which row, which key) when it gave one. */
function errorMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const detail = (err as { detail?: unknown }).detail;
  return typeof detail === 'string' && detail ? `${err.message} (${detail})` : err.message;
}

/** The SQLite side, opened so that nobody else can read or write it until `close`. */
interface Source {
  readonly file: string;
  /** Another process has the database open (only a dry run reads it then). */
  readonly inUse: boolean;
  readonly version: number;
  readonly counts: ReadonlyMap<MigratedTable, number>;
  readonly columns: ReadonlyMap<MigratedTable, readonly string[]>;
  /** Per identity table, the highest id ever handed out or still named anywhere. */
  idFloor(table: MigratedTable): number;
  rows(table: MigratedTable, columns: readonly string[]): IterableIterator<unknown[]>;
  close(): void;
}

/**
 * Opens the data directory's SQLite database for the copy. In EXCLUSIVE locking mode the
 * connection keeps its lock until it closes, and a database any other connection holds open
 * (every running server and CLI command does, in WAL mode, even when idle) cannot be locked at
 * all: with no wait, that is the test for "a server still runs on it". Refused then, since
 * whatever it wrote after the copy would be lost; a check (`allowInUse`) reads beside it instead,
 * in one read transaction (a snapshot, in WAL mode), and says so.
 */
function openSource(dataDir: string, allowInUse: boolean): Source {
  const file = path.join(dataDir, DATABASE_FILE);
  const open = (): Database.Database => {
    try {
      return new Database(file, { fileMustExist: true });
    } catch (err) {
      throw new StoreMigrateError('source-missing', `no SQLite database at ${file} (${errorMessage(err)}): --data-dir (HELLWALL_DATA_DIR) must name the data directory to migrate`, { cause: err });
    }
  };
  let db = open();
  let inUse = false;
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('locking_mode = EXCLUSIVE');
    try {
      db.exec('BEGIN EXCLUSIVE');
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
      if (!allowInUse) {
        throw new StoreMigrateError(
          'source-in-use',
          `the SQLite database ${file} is in use by another process (a running Hellwall server, or a hellwall command): stop the server first, then run store migrate again`,
          { cause: err },
        );
      }
      db.close();
      db = open();
      // The server's writes are short: wait for one rather than fail.
      db.pragma('busy_timeout = 1000');
      db.exec('BEGIN');
      inUse = true;
    }
    const version = db.pragma('user_version', { simple: true }) as number;
    const latest = MIGRATIONS.at(-1)!.version;
    if (version < latest) {
      throw new StoreMigrateError(
        'source-schema',
        `the SQLite database ${file} is at schema version ${version}, not ${latest} (this Hellwall's): start this version of Hellwall on the data directory once (or run any hellwall command on it, e.g. hellwall stats, which applies the migrations), stop it, then run store migrate again`,
      );
    }
    if (version > latest) {
      throw new StoreMigrateError(
        'source-schema',
        `the SQLite database ${file} is at schema version ${version}, newer than this Hellwall knows (${latest}): run store migrate with the Hellwall version that wrote it`,
      );
    }
    // A table this code does not name would be left behind silently: refused (a Hellwall defect).
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[]).sort();
    const unknown = tables.filter((t) => !(MIGRATED_TABLES as readonly string[]).includes(t) && !NOT_COPIED_TABLES.includes(t));
    const missing = MIGRATED_TABLES.filter((t) => !tables.includes(t));
    if (unknown.length > 0 || missing.length > 0) {
      throw new StoreMigrateError(
        'schema-mismatch',
        `the SQLite database holds the tables ${tables.join(', ')}; store migrate copies ${MIGRATED_TABLES.join(', ')} and leaves ${NOT_COPIED_TABLES.join(', ')}: this Hellwall cannot copy it`,
      );
    }
    const counts = new Map<MigratedTable, number>();
    const columns = new Map<MigratedTable, readonly string[]>();
    for (const t of MIGRATED_TABLES) {
      counts.set(t, db.prepare(`SELECT count(*) FROM ${t}`).pluck().get() as number);
      columns.set(t, (db.pragma(`table_info(${t})`) as Array<{ name: string }>).map((c) => c.name));
    }
    const maxOf = (table: string, column: string): number => (db.prepare(`SELECT coalesce(max(${column}), 0) FROM ${table}`).pluck().get() as number) ?? 0;
    const sequence = db.prepare('SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = ?').pluck();
    return {
      file,
      inUse,
      version,
      counts,
      columns,
      idFloor(table) {
        const named = (NAMED_ELSEWHERE[table] ?? []).map(([t, c]) => maxOf(t, c));
        return Math.max(maxOf(table, 'id'), sequence.get(table) as number, ...named);
      },
      // By the first column (the key of each table): the target's indexes fill in order.
      rows: (table, cols) => db.prepare(`SELECT ${cols.join(', ')} FROM ${table} ORDER BY 1`).raw(true).iterate() as IterableIterator<unknown[]>,
      close() {
        // Nothing was written: end the read and let the next opener take over.
        if (db.inTransaction) db.exec('ROLLBACK');
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}

interface TargetColumn {
  readonly name: string;
  readonly boolean: boolean;
  readonly identity: boolean;
}

/** The target's columns per table, in their order; a table it does not have is absent. */
async function targetColumns(client: pg.ClientBase): Promise<Map<MigratedTable, TargetColumn[]>> {
  const r = await client.query<{ table_name: MigratedTable; column_name: string; data_type: string; is_identity: string }>(
    `SELECT table_name, column_name, data_type, is_identity FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = ANY($1) ORDER BY table_name, ordinal_position`,
    [MIGRATED_TABLES],
  );
  const out = new Map<MigratedTable, TargetColumn[]>();
  for (const row of r.rows) {
    const list = out.get(row.table_name) ?? [];
    list.push({ name: row.column_name, boolean: row.data_type === 'boolean', identity: row.is_identity === 'YES' });
    out.set(row.table_name, list);
  }
  return out;
}

/** Rows per table of the target (a table it does not have yet counts 0). */
async function targetCounts(client: pg.ClientBase, tables: ReadonlySet<MigratedTable>): Promise<Map<MigratedTable, number>> {
  const out = new Map<MigratedTable, number>();
  for (const t of MIGRATED_TABLES) {
    out.set(t, tables.has(t) ? (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t}`)).rows[0]!.n : 0);
  }
  return out;
}

function refuseUnlessEmpty(counts: ReadonlyMap<MigratedTable, number>, target: string): void {
  const filled = [...counts].filter(([, n]) => n > 0);
  if (filled.length > 0) {
    throw new StoreMigrateError(
      'target-not-empty',
      `the PostgreSQL database ${target} is not empty (${filled.map(([t, n]) => `${t}: ${n}`).join(', ')}): store migrate copies only into an empty database, so nothing there is overwritten or mixed`,
    );
  }
}

/** The columns copied: the target's, which the source must have exactly. */
function columnsToCopy(source: Source, target: ReadonlyMap<MigratedTable, TargetColumn[]>): Map<MigratedTable, TargetColumn[]> {
  const out = new Map<MigratedTable, TargetColumn[]>();
  for (const t of MIGRATED_TABLES) {
    const cols = target.get(t) ?? [];
    const theirs = [...cols.map((c) => c.name)].sort().join(', ');
    const ours = [...source.columns.get(t)!].sort().join(', ');
    if (theirs !== ours) {
      throw new StoreMigrateError('schema-mismatch', `table ${t} has the columns (${ours}) in SQLite but (${theirs}) in PostgreSQL: this Hellwall cannot copy it`);
    }
    out.set(t, cols);
  }
  return out;
}

/** Checks that the target generates ids in exactly the tables whose sequences the copy advances. */
function identityColumns(columns: ReadonlyMap<MigratedTable, readonly TargetColumn[]>): void {
  const generated = MIGRATED_TABLES.filter((t) => columns.get(t)!.some((c) => c.identity));
  if (generated.join() !== IDENTITY_TABLES.join()) {
    throw new StoreMigrateError('schema-mismatch', `PostgreSQL generates the ids of ${generated.join(', ')}; store migrate advances those of ${IDENTITY_TABLES.join(', ')}: this Hellwall cannot copy it`);
  }
}

async function connect(url: string, connectTimeoutMs: number, target: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, application_name: 'hellwall-store-migrate' });
  // A connection that fails while idle must not end the process; the next query reports it.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new StoreConfigError(`cannot connect to the PostgreSQL database ${target}: ${scrub(errorMessage(err), url)}`, { cause: err });
  }
}

/** Copies one table in batches of multi-row INSERTs, keeping every id as it was. */
async function copyTable(client: pg.ClientBase, source: Source, table: MigratedTable, cols: readonly TargetColumn[]): Promise<void> {
  const names = cols.map((c) => c.name);
  const overriding = cols.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const perBatch = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMS / names.length)));
  const booleans = cols.map((c) => c.boolean);
  let batch: unknown[][] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const params: unknown[] = [];
    const tuples = batch.map((row) => `(${row.map((v) => `$${params.push(v)}`).join(', ')})`);
    await client.query(`INSERT INTO ${table} (${names.join(', ')})${overriding} VALUES ${tuples.join(', ')}`, params);
    batch = [];
  };
  for (const row of source.rows(table, names)) {
    // SQLite keeps booleans as 0/1.
    batch.push(row.map((v, i) => (booleans[i] && v !== null ? v !== 0 : v)));
    if (batch.length >= perBatch) await flush();
  }
  await flush();
}

/**
 * Copies every row of the data directory's SQLite database into an empty PostgreSQL database,
 * ids kept, in one PostgreSQL transaction (all or nothing), and verifies the row counts before
 * committing. The target is opened with openPostgresStore first, so it is at the newest schema.
 * Refuses (StoreMigrateError, nothing changed) when the SQLite database is in use, not at the newest
 * schema, or the target is not empty; StoreConfigError when the target cannot be reached. The
 * SQLite file and the key ring are left as they were: the key ring stays in the data directory,
 * and every node of the new database needs it.
 */
export async function migrateSqliteToPostgres(opts: MigrateOptions): Promise<MigrateReport> {
  const { url, log } = opts;
  const target = maskUrl(url);
  if (!POSTGRES_URL.test(url)) {
    throw new StoreConfigError(`the target of store migrate must be a postgres:// URL, not ${target}`);
  }
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const source = openSource(opts.dataDir, Boolean(opts.dryRun));
  try {
    log?.info({ source: source.file, target, schemaVersion: source.version, dryRun: Boolean(opts.dryRun), sourceInUse: source.inUse }, 'store migrate: source open');
    const nextIds = Object.fromEntries(IDENTITY_TABLES.map((t) => [t, source.idFloor(t) + 1]));
    const sqliteCounts = MIGRATED_TABLES.map((t) => [t, source.counts.get(t)!] as const);

    if (opts.dryRun) {
      const client = await connect(url, connectTimeoutMs, target);
      try {
        const exists = await client.query<{ v: string | null }>("SELECT to_regclass('schema_migrations')::text AS v");
        const version = exists.rows[0]!.v === null ? 0 : ((await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')).rows[0]!.v ?? 0);
        if (version > POSTGRES_SCHEMA_VERSION) {
          throw new StoreConfigError(`the PostgreSQL database ${target} is at schema version ${version}, newer than this Hellwall knows (${POSTGRES_SCHEMA_VERSION}): upgrade Hellwall`);
        }
        const present = await targetColumns(client);
        const counts = await targetCounts(client, new Set(present.keys()));
        refuseUnlessEmpty(counts, target);
        // Tables at the newest schema already (a node started on it) must take the source's columns.
        if (version === POSTGRES_SCHEMA_VERSION) identityColumns(columnsToCopy(source, present));
        return {
          source: source.file,
          target,
          sqliteSchemaVersion: source.version,
          postgresSchemaVersion: POSTGRES_SCHEMA_VERSION,
          tables: sqliteCounts.map(([table, sqlite]) => ({ table, sqlite, postgres: counts.get(table)! })),
          nextIds,
          copied: false,
          sourceInUse: source.inUse,
        };
      } finally {
        await client.end().catch(() => undefined);
      }
    }

    // Brings the target to the newest schema, exactly as a node's start would (same lock, same
    // migrations), and checks the URL and credentials with the store's own messages.
    const store = await openPostgresStore({ url, connectTimeoutMs, ...(log && { log }) });
    let postgresSchemaVersion: number;
    try {
      postgresSchemaVersion = await store.schemaVersion();
    } finally {
      await store.close();
    }

    const client = await connect(url, connectTimeoutMs, target);
    try {
      await client.query('BEGIN');
      let committing = false;
      try {
        // No node may write while the copy runs (they read on, and wait for the commit to write).
        await client.query("SET LOCAL lock_timeout = '10s'");
        await client.query(`LOCK TABLE ${MIGRATED_TABLES.join(', ')} IN EXCLUSIVE MODE`);
        const columns = columnsToCopy(source, await targetColumns(client));
        identityColumns(columns);
        refuseUnlessEmpty(await targetCounts(client, new Set(MIGRATED_TABLES)), target);
        for (const t of MIGRATED_TABLES) {
          try {
            await copyTable(client, source, t, columns.get(t)!);
          } catch (err) {
            throw new StoreMigrateError('copy-failed', `copying table ${t} failed: ${scrub(errorMessage(err), url)}; nothing was copied`, { cause: err });
          }
          log?.info({ table: t, rows: source.counts.get(t) }, 'store migrate: table copied');
        }
        // Identity sequences past every id the old database handed out, so no id comes back.
        for (const t of IDENTITY_TABLES) {
          const floor = nextIds[t]! - 1;
          await client.query(`SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)`, [t, Math.max(floor, 1), floor > 0]);
        }
        const after = await targetCounts(client, new Set(MIGRATED_TABLES));
        const wrong = sqliteCounts.filter(([t, n]) => after.get(t) !== n);
        if (wrong.length > 0) {
          throw new StoreMigrateError(
            'copy-failed',
            `row counts differ after the copy (${wrong.map(([t, n]) => `${t}: ${n} in SQLite, ${after.get(t)} in PostgreSQL`).join('; ')}); nothing was copied`,
          );
        }
        committing = true;
        await client.query('COMMIT');
        log?.info({ source: source.file, target }, 'store migrate: committed');
        return {
          source: source.file,
          target,
          sqliteSchemaVersion: source.version,
          postgresSchemaVersion,
          tables: sqliteCounts.map(([table, sqlite]) => ({ table, sqlite, postgres: after.get(table)! })),
          nextIds,
          copied: true,
          sourceInUse: false,
        };
      } catch (err) {
        if (committing) {
          throw new StoreMigrateError(
            'commit-unknown',
            `the commit to ${target} failed (${scrub(errorMessage(err), url)}): the target holds either nothing or the whole copy; count its users before starting a node, and run store migrate again if it is empty`,
            { cause: err },
          );
        }
        await client.query('ROLLBACK').catch(() => undefined);
        if (err instanceof StoreMigrateError || err instanceof StoreConfigError) throw err;
        throw new StoreMigrateError('copy-failed', `the copy to ${target} failed: ${scrub(errorMessage(err), url)}; nothing was copied`, { cause: err });
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    source.close();
  }
}
