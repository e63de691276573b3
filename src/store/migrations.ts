/**
 * Versioned schema migrations, applied in order at start-up inside one transaction each. Never
 * edit a released migration: add a new one, so databases made by older versions upgrade.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  /**
   * Run with foreign keys off, as sqlite.org's procedure for changes ALTER TABLE cannot make
   * (https://sqlite.org/lang_altertable.html#otheralter): a table is rebuilt under a new name, the
   * old one dropped, the new one renamed, and with foreign keys on, dropping a parent table would
   * cascade-delete its children. `PRAGMA foreign_key_check` must be clean before the commit.
   */
  readonly foreignKeysOff?: boolean;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users, passcodes, sessions, retired tokens',
    sql: `
      CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        email         TEXT NOT NULL UNIQUE,
        phone         TEXT NOT NULL,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
      );
      CREATE TABLE passcodes (
        user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        hash        BLOB NOT NULL,
        mac         TEXT NOT NULL,
        seen_ip     TEXT NOT NULL,
        reported_ip TEXT,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX passcodes_expires ON passcodes(expires_at);
      CREATE TABLE sessions (
        id                  INTEGER PRIMARY KEY,
        user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        master              BLOB NOT NULL UNIQUE,
        mac                 TEXT NOT NULL,
        ip                  TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        last_seen_at        INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL,
        generation          INTEGER NOT NULL DEFAULT 0,
        revoked_at          INTEGER,
        revoke_reason       TEXT
      );
      CREATE INDEX sessions_user ON sessions(user_id);
      CREATE TABLE retired_tokens (
        master      BLOB PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        generation  INTEGER NOT NULL,
        retired_at  INTEGER NOT NULL,
        grace_until INTEGER NOT NULL,
        nonce       BLOB NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX retired_tokens_session ON retired_tokens(session_id);
    `,
  },
  {
    version: 2,
    name: 'server key id with every keyed hash',
    // Rows from v1 were all made with the only key there was, which the key ring calls 1. No index:
    // key_id is read only by the key commands (list, retire), and an index would cost every login.
    sql: `
      ALTER TABLE sessions ADD COLUMN key_id INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE passcodes ADD COLUMN key_id INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE retired_tokens ADD COLUMN key_id INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE retired_tokens ADD COLUMN rotate_key_id INTEGER NOT NULL DEFAULT 1;
    `,
  },
  {
    version: 3,
    name: 'indexes that find dead sessions for housekeeping',
    // Housekeeping finds each kind of dead session through its own index, so a batch reads only
    // rows it deletes. Partial: open sessions (almost all of them) are indexed by when they die,
    // revoked ones only by when they were revoked. last_seen_at is written at most once a minute
    // per session, so its index costs little.
    sql: `
      CREATE INDEX sessions_open_absolute ON sessions(absolute_expires_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_open_last_seen ON sessions(last_seen_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
    `,
  },
  {
    version: 4,
    name: 'client-reported device with each session',
    // Nullable: sessions opened before 1.2, and by clients that send no `device`, have none.
    sql: `
      ALTER TABLE sessions ADD COLUMN device TEXT;
    `,
  },
  {
    version: 5,
    name: 'audit trail',
    // No foreign key to users: the trail must outlive the account it is about (a deleted user's
    // history is exactly what an investigation wants). The email is kept as it was at the time.
    // Queries answer newest first, in id (insertion) order, and page by id. By operator and by
    // action the index holds that order itself (SQLite ends every index with the rowid, here id), so a page reads about `limit` rows however long
    // the operator's history (an index on (email, at) would sort the whole history for each page).
    // audit_at serves time ranges and housekeeping's deletion of rows past retention; outcome,
    // with three values, is a filter over the others.
    sql: `
      CREATE TABLE audit (
        id         INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        action     TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        user_id    INTEGER,
        email      TEXT,
        actor      TEXT,
        ip         TEXT,
        mac        TEXT,
        session_id INTEGER,
        detail     TEXT
      );
      CREATE INDEX audit_at ON audit(at);
      CREATE INDEX audit_email ON audit(email);
      CREATE INDEX audit_action ON audit(action);
    `,
  },
  {
    version: 6,
    name: 'shared counters; user and session ids never reused',
    foreignKeysOff: true,
    // Counters: rate limits and lockout, shared by every process on the database. WITHOUT ROWID:
    // looked up by key only; counters_expires serves housekeeping.
    //
    // Ids: SQLite hands out max(id) + 1, so deleting the newest account (or session) and adding
    // another reused its id, and the audit trail's rows about the deleted one would name the new
    // one. Only an AUTOINCREMENT table never reuses an id, and ALTER TABLE cannot add that: users
    // and sessions are rebuilt (sqlite.org's 12 steps, with foreign keys off; see Migration), ids
    // and rows kept. The counter starts above every id the audit trail (and a retired token) names,
    // so ids of rows deleted before this migration are not handed out again either.
    sql: `
      CREATE TABLE counters (
        key        TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        until      INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX counters_expires ON counters(expires_at);

      CREATE TABLE users_v6 (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL UNIQUE,
        phone         TEXT NOT NULL,
        role          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL
      );
      INSERT INTO users_v6 (id, email, phone, role, password_hash, disabled, created_at)
        SELECT id, email, phone, role, password_hash, disabled, created_at FROM users;
      DROP TABLE users;
      ALTER TABLE users_v6 RENAME TO users;

      CREATE TABLE sessions_v6 (
        id                  INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id             INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        master              BLOB NOT NULL UNIQUE,
        mac                 TEXT NOT NULL,
        ip                  TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        last_seen_at        INTEGER NOT NULL,
        expires_at          INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL,
        generation          INTEGER NOT NULL DEFAULT 0,
        revoked_at          INTEGER,
        revoke_reason       TEXT,
        key_id              INTEGER NOT NULL DEFAULT 1,
        device              TEXT
      );
      INSERT INTO sessions_v6 (id, user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at,
                               generation, revoked_at, revoke_reason, key_id, device)
        SELECT id, user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at,
               generation, revoked_at, revoke_reason, key_id, device FROM sessions;
      DROP TABLE sessions;
      ALTER TABLE sessions_v6 RENAME TO sessions;
      CREATE INDEX sessions_user ON sessions(user_id);
      CREATE INDEX sessions_open_absolute ON sessions(absolute_expires_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_open_last_seen ON sessions(last_seen_at) WHERE revoked_at IS NULL;
      CREATE INDEX sessions_revoked ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;

      DELETE FROM sqlite_sequence WHERE name IN ('users', 'sessions');
      INSERT INTO sqlite_sequence (name, seq) VALUES
        ('users', max(0, coalesce((SELECT max(id) FROM users), 0), coalesce((SELECT max(user_id) FROM audit), 0))),
        ('sessions', max(0, coalesce((SELECT max(id) FROM sessions), 0), coalesce((SELECT max(session_id) FROM audit), 0),
                         coalesce((SELECT max(session_id) FROM retired_tokens), 0)));
    `,
  },
  {
    version: 7,
    name: 'running nodes and the key each signs with',
    // So that retiring a key can refuse while any running server still makes new hashes with it:
    // the files on disk say what the next reload will use, not what a running server uses now.
    sql: `
      CREATE TABLE nodes (
        id             TEXT PRIMARY KEY,
        current_key_id INTEGER NOT NULL,
        seen_at        INTEGER NOT NULL
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 8,
    name: 'second factors: factor state, sealed secrets, recovery codes, session scope',
    // Issue 13. Secrets are sealed (AES-256-GCM under a key derived from the server key ring, its id
    // kept with the row): the database alone yields none. A session's scope is `full`, or `enroll`
    // for an operator who must enrol a required factor before anything else.
    sql: `
      CREATE TABLE user_factors (
        user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        factor       TEXT NOT NULL,
        confirmed_at INTEGER,
        must_enroll  INTEGER NOT NULL DEFAULT 0,
        last_step    INTEGER NOT NULL DEFAULT 0,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (user_id, factor)
      ) WITHOUT ROWID;
      CREATE TABLE user_secrets (
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        kind       TEXT NOT NULL,
        key_id     INTEGER NOT NULL,
        sealed     BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, kind)
      ) WITHOUT ROWID;
      CREATE INDEX user_secrets_key ON user_secrets(key_id);
      CREATE TABLE recovery_codes (
        user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        hash       BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, hash)
      ) WITHOUT ROWID;
      CREATE TABLE recovery_passcodes (
        user_id     INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        hash        BLOB NOT NULL,
        mac         TEXT NOT NULL,
        seen_ip     TEXT NOT NULL,
        reported_ip TEXT,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        key_id      INTEGER NOT NULL
      );
      ALTER TABLE sessions ADD COLUMN scope TEXT NOT NULL DEFAULT 'full';
    `,
  },
  {
    version: 9,
    name: 'known devices and address groups of each operator',
    // Issue 13 item 4: a login from a MAC or an address group not seen before for the operator
    // mails them. Seeded from the sessions still kept, so an upgrade does not greet every operator
    // with a "new sign-in" mail (IPv6 groups need the configured prefix: those are learnt anew).
    sql: `
      CREATE TABLE devices (
        user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        mac           TEXT NOT NULL,
        name          TEXT,
        first_seen_at INTEGER,
        last_seen_at  INTEGER,
        last_ip       TEXT,
        registered_at INTEGER,
        registered_by TEXT,
        PRIMARY KEY (user_id, mac)
      ) WITHOUT ROWID;
      CREATE TABLE device_addresses (
        user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        addr_group    TEXT NOT NULL,
        first_seen_at INTEGER NOT NULL,
        last_seen_at  INTEGER NOT NULL,
        PRIMARY KEY (user_id, addr_group)
      ) WITHOUT ROWID;
      INSERT INTO devices (user_id, mac, first_seen_at, last_seen_at)
        SELECT user_id, mac, min(created_at), max(last_seen_at) FROM sessions GROUP BY user_id, mac;
      INSERT INTO device_addresses (user_id, addr_group, first_seen_at, last_seen_at)
        SELECT user_id, ip, min(created_at), max(last_seen_at) FROM sessions WHERE instr(ip, ':') = 0 GROUP BY user_id, ip;
    `,
  },
];
