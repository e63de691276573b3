import type pg from 'pg';
import type { Migration } from './migrations.js';
import { StoreConfigError } from './store.js';

/**
 * The PostgreSQL schema, versioned on its own (it starts where SQLite's fifth migration ended, plus
 * the shared counters). Never edit a released migration: add one, so older databases upgrade.
 *
 * Column by column the tables are SQLite's, so data moves between the backends unchanged: times
 * are BIGINT milliseconds, tokens and hashes BYTEA. Ids are identities, never reused (a deleted
 * session's id must not come back as someone else's). Emails, actions and counter keys compare
 * byte by byte (COLLATE "C") whatever the database's locale, as SQLite's BINARY does: emails are
 * normalized by the services, and the audit's `action` prefix is searched as a range.
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users, passcodes, sessions, retired tokens, audit, counters',
    // Housekeeping finds each kind of dead row through its own index (partial for sessions: open
    // ones by when they die, revoked ones by when they were revoked), so a batch reads only rows it
    // deletes. Audit pages run newest first by id within an operator or an action: the index ends
    // with id (SQLite's do implicitly), so a page reads about `limit` rows however long the history.
    // The audit has no foreign key: the trail outlives the account it is about.
    sql: `
      CREATE TABLE users (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        email         TEXT COLLATE "C" NOT NULL UNIQUE,
        phone         TEXT NOT NULL,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled      BOOLEAN NOT NULL DEFAULT false,
        created_at    BIGINT NOT NULL
      );
      CREATE TABLE passcodes (
        user_id     BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        hash        BYTEA NOT NULL,
        mac         TEXT NOT NULL,
        seen_ip     TEXT NOT NULL,
        reported_ip TEXT,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        key_id      INTEGER NOT NULL DEFAULT 1
      );
      CREATE INDEX passcodes_expires ON passcodes(expires_at);
      CREATE TABLE sessions (
        id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id             BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        master              BYTEA NOT NULL UNIQUE,
        mac                 TEXT NOT NULL,
        ip                  TEXT NOT NULL,
        created_at          BIGINT NOT NULL,
        last_seen_at        BIGINT NOT NULL,
        expires_at          BIGINT NOT NULL,
        absolute_expires_at BIGINT NOT NULL,
        generation          INTEGER NOT NULL DEFAULT 0,
        revoked_at          BIGINT,
        revoke_reason       TEXT,
        key_id              INTEGER NOT NULL DEFAULT 1,
        device              TEXT
      );
      CREATE INDEX sessions_user ON sessions(user_id);
      CREATE INDEX sessions_open_absolute ON sessions(absolute_expires_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_open_last_seen ON sessions(last_seen_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
      CREATE TABLE retired_tokens (
        master        BYTEA PRIMARY KEY,
        session_id    BIGINT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        generation    INTEGER NOT NULL,
        retired_at    BIGINT NOT NULL,
        grace_until   BIGINT NOT NULL,
        nonce         BYTEA NOT NULL,
        key_id        INTEGER NOT NULL DEFAULT 1,
        rotate_key_id INTEGER NOT NULL DEFAULT 1
      );
      CREATE INDEX retired_tokens_session ON retired_tokens(session_id);
      CREATE TABLE audit (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at         BIGINT NOT NULL,
        action     TEXT COLLATE "C" NOT NULL,
        outcome    TEXT NOT NULL,
        user_id    BIGINT,
        email      TEXT COLLATE "C",
        actor      TEXT,
        ip         TEXT,
        mac        TEXT,
        session_id BIGINT,
        detail     TEXT
      );
      CREATE INDEX audit_at ON audit(at);
      CREATE INDEX audit_email ON audit(email, id);
      CREATE INDEX audit_action ON audit(action, id);
      CREATE TABLE counters (
        key        TEXT COLLATE "C" PRIMARY KEY,
        count      INTEGER NOT NULL,
        until      BIGINT NOT NULL DEFAULT 0,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX counters_expires ON counters(expires_at);
    `,
  },
  {
    version: 2,
    name: 'running nodes and the key each signs with',
    // So that retiring a key can refuse while any running server still makes new hashes with it.
    sql: `
      CREATE TABLE nodes (
        id             TEXT PRIMARY KEY,
        current_key_id INTEGER NOT NULL,
        seen_at        BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'second factors: factor state, sealed secrets, recovery codes, session scope',
    // As SQLite's migration 8 (issue 13).
    sql: `
      CREATE TABLE user_factors (
        user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        factor       TEXT NOT NULL,
        confirmed_at BIGINT,
        must_enroll  BOOLEAN NOT NULL DEFAULT false,
        last_step    BIGINT NOT NULL DEFAULT 0,
        created_at   BIGINT NOT NULL,
        PRIMARY KEY (user_id, factor)
      );
      CREATE TABLE user_secrets (
        user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        key_id     INTEGER NOT NULL,
        sealed     BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, kind)
      );
      CREATE INDEX user_secrets_key ON user_secrets(key_id);
      CREATE TABLE recovery_codes (
        user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        hash       BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (user_id, hash)
      );
      CREATE TABLE recovery_passcodes (
        user_id     BIGINT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        hash        BYTEA NOT NULL,
        mac         TEXT NOT NULL,
        seen_ip     TEXT NOT NULL,
        reported_ip TEXT,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        key_id      INTEGER NOT NULL
      );
      ALTER TABLE sessions ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
    `,
  },
  {
    version: 4,
    name: 'known devices and address groups of each operator',
    // As SQLite's migration 9 (issue 13 item 4), seeded from the sessions still kept.
    sql: `
      CREATE TABLE devices (
        user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        mac           TEXT NOT NULL,
        name          TEXT,
        first_seen_at BIGINT,
        last_seen_at  BIGINT,
        last_ip       TEXT,
        registered_at BIGINT,
        registered_by TEXT,
        PRIMARY KEY (user_id, mac)
      );
      CREATE TABLE device_addresses (
        user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        addr_group    TEXT NOT NULL,
        first_seen_at BIGINT NOT NULL,
        last_seen_at  BIGINT NOT NULL,
        PRIMARY KEY (user_id, addr_group)
      );
      INSERT INTO devices (user_id, mac, first_seen_at, last_seen_at)
        SELECT user_id, mac, min(created_at), max(last_seen_at) FROM sessions GROUP BY user_id, mac;
      INSERT INTO device_addresses (user_id, addr_group, first_seen_at, last_seen_at)
        SELECT user_id, ip, min(created_at), max(last_seen_at) FROM sessions WHERE strpos(ip, ':') = 0 GROUP BY user_id, ip;
    `,
  },
];

/** The schema version this code creates and understands. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]!.version;

// pg_advisory_lock's two-key form: a key space apart from `exclusive`'s one-key hashtext locks.
const MIGRATION_LOCK = 'SELECT pg_advisory_lock(4812023, 1)';
const MIGRATION_UNLOCK = 'SELECT pg_advisory_unlock(4812023, 1)';

/**
 * Brings the database to the newest schema and answers its version. Several nodes starting
 * together queue on one advisory lock, so each migration runs once; each runs in its own
 * transaction, recorded in schema_migrations. A database newer than `migrations` is refused (an
 * older node must not write to a schema it does not know).
 */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly Migration[] = POSTGRES_MIGRATIONS): Promise<number> {
  // A large database's migration may outlast the statement timeout meant for requests; the caller
  // discards this connection afterwards, so the setting goes with it.
  await client.query('SET statement_timeout = 0');
  await client.query(MIGRATION_LOCK);
  try {
    await client.query(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        applied_at BIGINT NOT NULL
      )`);
    const known = migrations.at(-1)?.version ?? 0;
    let current = await versionOf(client);
    if (current > known) {
      throw new StoreConfigError(
        `the database's schema is version ${current}, newer than this Hellwall knows (version ${known}): upgrade Hellwall, or use another database`,
      );
    }
    for (const m of migrations) {
      if (m.version <= current) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query(
          `INSERT INTO schema_migrations (version, name, applied_at)
           VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)`,
          [m.version, m.name],
        );
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      current = m.version;
    }
    return current;
  } finally {
    await client.query(MIGRATION_UNLOCK).catch(() => undefined);
  }
}

/** The version recorded in schema_migrations (0 for a database never migrated). */
export async function versionOf(client: Pick<pg.ClientBase, 'query'>): Promise<number> {
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  return r.rows[0]?.v ?? 0;
}
