import pg from 'pg';
import type { Logger } from '../deps.js';
import { migratePostgres, versionOf } from './postgres-migrations.js';
import {
  DuplicateUserError,
  StoreBusyError,
  StoreConfigError,
  StoreUnavailableError,
  type AuditEvent,
  type AuditQuery,
  type ExpiredCounts,
  type SessionRecord,
  type Store,
  type StoreChange,
  type StoreOps,
} from './store.js';
import { toAudit, toCounter, toPasscode, toRetired, toSession, toUser, type AuditRow, type CounterRow, type PasscodeRow, type RetiredRow, type SessionRow, type UserRow } from './rows.js';
import { toFactor, toSecret, type FactorRow, type SecretRow } from './rows.js';
import { DEVICE_COLS, toDevice, type DeviceRow } from './rows.js';

/**
 * How to reach the database. `url` is node-postgres's connection string:
 * `postgres://user:password@host:port/database`, with its parameters for TLS:
 * - `sslmode=verify-full&sslrootcert=/path/ca.pem`: encrypted, the server's certificate checked
 *   against that CA and its name against the host (the right setting across a network);
 * - `sslmode=require` (and `prefer`, `verify-ca`): node-postgres 8 treats these as verify-full
 *   too (with a deprecation warning); add `uselibpqcompat=true` for libpq's weaker meanings;
 * - `sslmode=no-verify`: encrypted without checking the certificate (testing only);
 * - `sslcert=…&sslkey=…`: a client certificate, for servers that authenticate by certificate.
 * Files named there are read when a connection is made. Hot statements are prepared per
 * connection, so a PgBouncer in front must use session pooling.
 */
export interface PostgresStoreOptions {
  readonly url: string;
  /** Pooled connections (default 10); `exclusive` holds one for its whole run, so at least 2. */
  readonly poolMax?: number;
  /** Wait for a new connection, and for a free pooled one (default 5000 ms). */
  readonly connectTimeoutMs?: number;
  /** Longest statement (default 5000 ms); a statement waiting on a lock that long is busy. */
  readonly statementTimeoutMs?: number;
  readonly log?: Logger;
  /** The LISTEN/NOTIFY channel every node on the database shares (default `hellwall_changes`). */
  readonly channel?: string;
  /**
   * How often the change feed's connection is checked with a query that must answer within the
   * same time (default 2000 ms). Bounds how long a silently dead link (no reset, no keepalive
   * answer yet) keeps `coherent` true: at most twice this.
   */
  readonly heartbeatMs?: number;
}

const DEFAULT_CHANNEL = 'hellwall_changes';
// The client-side deadline of a statement, past the server's statement_timeout: it fires only when
// the server cannot answer at all (a dead link), and then the connection is discarded.
const QUERY_TIMEOUT_SLACK_MS = 1000;
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5000;
// NOTIFY payloads must stay under 8000 bytes; ids are packed into payloads of at most this.
const PAYLOAD_MAX = 7000;

// BIGINT (times, ids, counts) as a JS number: every value here is far below 2^53. Set on this
// store's connections only, not on node-postgres's global parsers.
const INT8_OID = 20;
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};

const USER_COLS = 'id, email, phone, role, password_hash, disabled, created_at';
const PASSCODE_COLS = 'user_id, hash, mac, seen_ip, reported_ip, created_at, expires_at, attempts, key_id';
const RETIRED_COLS = 'master, session_id, generation, retired_at, grace_until, nonce, key_id, rotate_key_id';
const AUDIT_COLS = 'id, at, action, outcome, user_id, email, actor, ip, mac, session_id, detail';
const FACTOR_COLS = 'user_id, factor, confirmed_at, must_enroll, last_step, created_at';
const SECRET_COLS = 'user_id, kind, key_id, sealed, updated_at';
// Explicit columns, never `*`: a prepared statement whose result shape changed under it (a newer
// node migrated the schema) would fail on every connection that prepared it.
const SESSION_SELECT = `
  SELECT s.id, s.user_id, s.master, s.mac, s.ip, s.created_at, s.last_seen_at, s.expires_at, s.absolute_expires_at,
    s.generation, s.revoked_at, s.revoke_reason, s.key_id, s.device, s.scope,
    u.email AS user_email, u.role AS user_role, u.disabled AS user_disabled
  FROM sessions s JOIN users u ON u.id = s.user_id`;

/**
 * Every fixed statement, prepared once per connection by name (node-postgres keeps the prepared
 * ones per connection). Writes that change sessions or users announce it with pg_notify in the
 * same statement: PostgreSQL delivers the notification when (and only when) the change commits,
 * to every node listening, this one included.
 */
function statements(channel: string) {
  const notify = (payload: string): string => `pg_notify('${channel}', ${payload})`;
  const st = (name: string, text: string) => ({ name: `hw_${name}`, text });
  return {
    insertUser: st(
      'insert_user',
      `INSERT INTO users (email, phone, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING ${USER_COLS}`,
    ),
    userByEmail: st('user_by_email', `SELECT ${USER_COLS} FROM users WHERE email = $1`),
    userById: st('user_by_id', `SELECT ${USER_COLS} FROM users WHERE id = $1`),
    setPasswordHash: st(
      'set_password_hash',
      `WITH c AS (UPDATE users SET password_hash = $1 WHERE id = $2 RETURNING id) SELECT ${notify(`'u:' || c.id`)} FROM c`,
    ),
    replacePasswordHash: st(
      'replace_password_hash',
      `WITH c AS (UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3 RETURNING id)
       SELECT ${notify(`'u:' || c.id`)} FROM c`,
    ),
    listUsers: st('list_users', `SELECT ${USER_COLS} FROM users ORDER BY id`),
    setDisabled: st(
      'set_disabled',
      `WITH c AS (UPDATE users SET disabled = $1 WHERE id = $2 RETURNING id) SELECT ${notify(`'u:' || c.id`)} FROM c`,
    ),
    setRole: st('set_role', `WITH c AS (UPDATE users SET role = $1 WHERE id = $2 RETURNING id) SELECT ${notify(`'u:' || c.id`)} FROM c`),
    deleteUser: st('delete_user', `WITH c AS (DELETE FROM users WHERE id = $1 RETURNING id) SELECT ${notify(`'u:' || c.id`)} FROM c`),
    // One announcement for the user covers every session of theirs, however many were revoked.
    revokeUserSessions: st(
      'revoke_user_sessions',
      `WITH r AS (
         UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3::bigint AND revoked_at IS NULL RETURNING 1
       ), c AS (SELECT count(*) AS n FROM r)
       SELECT n, CASE WHEN n > 0 THEN ${notify(`'u:' || $3::bigint`)} END AS notified FROM c`,
    ),
    putPasscode: st(
      'put_passcode',
      `INSERT INTO passcodes (${PASSCODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (user_id) DO UPDATE SET hash = EXCLUDED.hash, mac = EXCLUDED.mac, seen_ip = EXCLUDED.seen_ip,
         reported_ip = EXCLUDED.reported_ip, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
         attempts = EXCLUDED.attempts, key_id = EXCLUDED.key_id`,
    ),
    getPasscode: st('get_passcode', `SELECT ${PASSCODE_COLS} FROM passcodes WHERE user_id = $1`),
    lockPasscode: st('lock_passcode', `SELECT ${PASSCODE_COLS} FROM passcodes WHERE user_id = $1 FOR UPDATE`),
    deletePasscode: st('delete_passcode', 'DELETE FROM passcodes WHERE user_id = $1'),
    setAttempts: st('set_attempts', 'UPDATE passcodes SET attempts = $1 WHERE user_id = $2'),
    pendingPasscodes: st('pending_passcodes', 'SELECT count(*) AS n FROM passcodes WHERE expires_at > $1'),
    // A new user or session needs no announcement: no cache can hold a row that did not exist.
    insertSession: st(
      'insert_session',
      `INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at, key_id, device, scope)
       VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10) RETURNING id`,
    ),
    sessionByMaster: st('session_by_master', `${SESSION_SELECT} WHERE s.master = $1`),
    sessionById: st('session_by_id', `${SESSION_SELECT} WHERE s.id = $1`),
    lockSessionById: st('lock_session_by_id', `${SESSION_SELECT} WHERE s.id = $1 FOR UPDATE OF s`),
    // NO KEY UPDATE: conflicts with itself and with writes to the user, not with the FOR KEY SHARE
    // that inserting a session (its foreign key) takes, so only lockers of the user queue.
    lockUser: st('lock_user', 'SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE'),
    openSessionsOf: st('open_sessions_of', `${SESSION_SELECT} WHERE s.user_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at, s.id`),
    lockOpenSessionsOf: st(
      'lock_open_sessions_of',
      `${SESSION_SELECT} WHERE s.user_id = $1 AND s.revoked_at IS NULL ORDER BY s.created_at, s.id FOR UPDATE OF s`,
    ),
    allOpenSessions: st('all_open_sessions', `${SESSION_SELECT} WHERE s.revoked_at IS NULL ORDER BY s.created_at, s.id`),
    sessionCounts: st(
      'session_counts',
      `SELECT u.email,
         count(*) FILTER (WHERE s.expires_at > $1 OR (s.absolute_expires_at > $2 AND s.last_seen_at > $3))::int AS active,
         count(*)::int AS open
       FROM sessions s JOIN users u ON u.id = s.user_id
       WHERE s.revoked_at IS NULL AND NOT u.disabled GROUP BY u.id`,
    ),
    countLive: st(
      'count_live',
      `SELECT count(*) AS n FROM sessions s JOIN users u ON u.id = s.user_id
       WHERE s.revoked_at IS NULL AND NOT u.disabled
         AND (s.expires_at > $1 OR (s.absolute_expires_at > $2 AND s.last_seen_at > $3))`,
    ),
    retired: st('retired', `SELECT ${RETIRED_COLS} FROM retired_tokens WHERE master = $1`),
    // One statement, so atomic on its own: the retired row is written only when the guarded update
    // matched. Under READ COMMITTED a concurrent rotation makes the update wait for its commit and
    // then re-check the guard against the new row, which no longer matches.
    rotate: st(
      'rotate',
      `WITH r AS (
         UPDATE sessions SET master = $3, key_id = $9, generation = generation + 1, expires_at = $5, last_seen_at = $4
         WHERE id = $1 AND master = $2 AND generation = $6 AND revoked_at IS NULL
         RETURNING id
       ), t AS (
         INSERT INTO retired_tokens (${RETIRED_COLS})
         SELECT $2::bytea, r.id, $6::integer, $4::bigint, $7::bigint, $8::bytea, $10::integer, $9::integer FROM r
         ON CONFLICT (master) DO UPDATE SET session_id = EXCLUDED.session_id, generation = EXCLUDED.generation,
           retired_at = EXCLUDED.retired_at, grace_until = EXCLUDED.grace_until, nonce = EXCLUDED.nonce,
           key_id = EXCLUDED.key_id, rotate_key_id = EXCLUDED.rotate_key_id
       )
       SELECT ${notify(`'s:' || r.id`)} AS notified FROM r`,
    ),
    // Best effort: a row locked by another transaction (a renewal, a revoke) is skipped rather than
    // waited for. Not announced: last activity matters to renewal and housekeeping, which read the
    // row itself, never a cached copy.
    touch: st(
      'touch',
      `WITH t AS (
         UPDATE sessions SET last_seen_at = $2 WHERE id = (SELECT id FROM sessions WHERE id = $1 FOR UPDATE SKIP LOCKED) RETURNING 1
       )
       SELECT EXISTS (SELECT 1 FROM t) AS touched, EXISTS (SELECT 1 FROM sessions WHERE id = $1) AS present`,
    ),
    revoke: st(
      'revoke',
      `WITH r AS (UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL RETURNING id)
       SELECT ${notify(`'s:' || r.id`)} AS notified FROM r`,
    ),
    countByKey: st(
      'count_by_key',
      'SELECT key_id, count(*) AS n FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at > $1 GROUP BY key_id',
    ),
    revokeByKey: st(
      'revoke_by_key',
      `WITH s AS (
         UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE key_id = $3::integer AND revoked_at IS NULL RETURNING 1
       ), p AS (DELETE FROM passcodes WHERE key_id = $3::integer RETURNING 1),
       c AS (SELECT (SELECT count(*) FROM s) AS sessions, (SELECT count(*) FROM p) AS passcodes)
       SELECT sessions, passcodes, CASE WHEN sessions > 0 THEN ${notify(`'*'`)} END AS notified FROM c`,
    ),
    // Any number of events in one statement, in order (ids follow it).
    insertAudit: st(
      'insert_audit',
      `INSERT INTO audit (at, action, outcome, user_id, email, actor, ip, mac, session_id, detail)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
         $8::text[], $9::bigint[], $10::text[])`,
    ),
    // Keys come sorted, so two multi-key hits lock their rows in the same order (no deadlock).
    // An expired counter starts over, as if it had been deleted.
    hitCounters: st(
      'hit_counters',
      `INSERT INTO counters AS c (key, count, until, expires_at)
       SELECT k, 1, 0, $3::bigint FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i
       ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN c.expires_at <= $2::bigint THEN 1 ELSE c.count + 1 END,
         until = CASE WHEN c.expires_at <= $2::bigint THEN 0 ELSE c.until END,
         expires_at = CASE WHEN c.expires_at <= $2::bigint THEN $3::bigint ELSE greatest(c.expires_at, $3::bigint) END
       RETURNING key, count, until, expires_at`,
    ),
    readCounters: st(
      'read_counters',
      'SELECT key, count, until, expires_at FROM counters WHERE key = ANY($1::text[]) AND expires_at > $2',
    ),
    // In a transaction, first: a transaction-scoped advisory lock per key, taken whether or not the
    // key has a row. Row locks alone cannot serialize a decision made on a counter's absence (two
    // transactions both find no row and both go ahead), nor on a row another transaction deletes
    // and re-inserts (clear then block: the waiter's FOR UPDATE then finds nothing). Taken in hash
    // order, each hash once, so two transactions never wait on each other in a cycle. The two-key
    // form, apart from `exclusive`'s one-key locks and the migration lock (4812023).
    lockCounterKeys: st(
      'lock_counter_keys',
      `SELECT pg_advisory_xact_lock(4812024, h) FROM (
         SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS u(k) ORDER BY h) AS hashes`,
    ),
    // In a transaction: the rows found stay locked to commit, in key order (no lock-order cycles).
    readCountersForUpdate: st(
      'read_counters_for_update',
      'SELECT key, count, until, expires_at FROM counters WHERE key = ANY($1::text[]) AND expires_at > $2 ORDER BY key FOR UPDATE',
    ),
    recordNode: st(
      'record_node',
      `INSERT INTO nodes (id, current_key_id, seen_at) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET current_key_id = excluded.current_key_id, seen_at = excluded.seen_at`,
    ),
    listNodes: st('list_nodes', 'SELECT id, current_key_id, seen_at FROM nodes WHERE seen_at >= $1 ORDER BY id'),
    forgetNode: st('forget_node', 'DELETE FROM nodes WHERE id = $1'),
    listFactors: st('list_factors', `SELECT ${FACTOR_COLS} FROM user_factors WHERE user_id = $1 ORDER BY factor`),
    putFactor: st(
      'put_factor',
      `INSERT INTO user_factors (user_id, factor, confirmed_at, must_enroll, last_step, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (user_id, factor) DO UPDATE SET confirmed_at = excluded.confirmed_at, must_enroll = excluded.must_enroll,
         last_step = excluded.last_step, created_at = excluded.created_at`,
    ),
    deleteFactor: st('delete_factor', 'DELETE FROM user_factors WHERE user_id = $1 AND factor = $2'),
    useFactorStep: st('use_factor_step', 'UPDATE user_factors SET last_step = $3 WHERE user_id = $1 AND factor = $2 AND last_step < $3'),
    getSecret: st('get_secret', `SELECT ${SECRET_COLS} FROM user_secrets WHERE user_id = $1 AND kind = $2`),
    lockSecret: st('lock_secret', `SELECT ${SECRET_COLS} FROM user_secrets WHERE user_id = $1 AND kind = $2 FOR UPDATE`),
    putSecret: st(
      'put_secret',
      `INSERT INTO user_secrets (user_id, kind, key_id, sealed, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (user_id, kind) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed, updated_at = excluded.updated_at`,
    ),
    deleteSecret: st('delete_secret', 'DELETE FROM user_secrets WHERE user_id = $1 AND kind = $2'),
    secretsByKey: st('secrets_by_key', `SELECT ${SECRET_COLS} FROM user_secrets WHERE key_id = $1 ORDER BY user_id, kind LIMIT $2`),
    resealSecret: st(
      'reseal_secret',
      'UPDATE user_secrets SET key_id = $4, sealed = $5, updated_at = $6 WHERE user_id = $1 AND kind = $2 AND key_id = $3',
    ),
    // One statement, so it is atomic outside a transaction too. Codes are random: a new hash never
    // equals an old one, so the insert never meets a row the delete is removing.
    putRecoveryCodes: st(
      'put_recovery_codes',
      `WITH d AS (DELETE FROM recovery_codes WHERE user_id = $1)
       INSERT INTO recovery_codes (user_id, hash, created_at) SELECT $1, h, $3 FROM unnest($2::bytea[]) AS h ON CONFLICT DO NOTHING`,
    ),
    putRecoveryPasscode: st(
      'put_recovery_passcode',
      `INSERT INTO recovery_passcodes (user_id, hash, mac, seen_ip, reported_ip, created_at, expires_at, attempts, key_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, mac = excluded.mac, seen_ip = excluded.seen_ip,
         reported_ip = excluded.reported_ip, created_at = excluded.created_at, expires_at = excluded.expires_at,
         attempts = excluded.attempts, key_id = excluded.key_id`,
    ),
    getRecoveryPasscode: st('get_recovery_passcode', `SELECT ${PASSCODE_COLS} FROM recovery_passcodes WHERE user_id = $1`),
    lockRecoveryPasscode: st('lock_recovery_passcode', `SELECT ${PASSCODE_COLS} FROM recovery_passcodes WHERE user_id = $1 FOR UPDATE`),
    deleteRecoveryPasscode: st('delete_recovery_passcode', 'DELETE FROM recovery_passcodes WHERE user_id = $1'),
    setRecoveryAttempts: st('set_recovery_attempts', 'UPDATE recovery_passcodes SET attempts = $2 WHERE user_id = $1'),
    useRecoveryCode: st('use_recovery_code', 'DELETE FROM recovery_codes WHERE user_id = $1 AND hash = $2'),
    countRecoveryCodes: st('count_recovery_codes', 'SELECT count(*)::int AS n FROM recovery_codes WHERE user_id = $1'),
    listDevices: st('list_devices', `SELECT ${DEVICE_COLS} FROM devices WHERE user_id = $1 ORDER BY mac`),
    getDevice: st('get_device', `SELECT ${DEVICE_COLS} FROM devices WHERE user_id = $1 AND mac = $2`),
    // A login's device, one atomic statement at a time (see recordDeviceLogin): inserted (new), or
    // first used (registered, never seen: new; a racing login waits on the row and finds it seen),
    // or refreshed.
    insertSeenDevice: st(
      'insert_seen_device',
      `INSERT INTO devices (user_id, mac, name, first_seen_at, last_seen_at, last_ip) VALUES ($1, $2, $3, $4, $4, $5)
       ON CONFLICT (user_id, mac) DO NOTHING`,
    ),
    firstUseDevice: st(
      'first_use_device',
      `UPDATE devices SET first_seen_at = $4, last_seen_at = $4, last_ip = $5, name = coalesce(name, $3)
       WHERE user_id = $1 AND mac = $2 AND first_seen_at IS NULL`,
    ),
    seenDevice: st(
      'seen_device',
      `UPDATE devices SET last_seen_at = greatest(coalesce(last_seen_at, 0), $4), last_ip = $5, name = coalesce(name, $3)
       WHERE user_id = $1 AND mac = $2`,
    ),
    insertSeenAddress: st(
      'insert_seen_address',
      `INSERT INTO device_addresses (user_id, addr_group, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $3)
       ON CONFLICT (user_id, addr_group) DO NOTHING`,
    ),
    seenAddress: st(
      'seen_address',
      'UPDATE device_addresses SET last_seen_at = greatest(last_seen_at, $3) WHERE user_id = $1 AND addr_group = $2',
    ),
    registerDevice: st(
      'register_device',
      `INSERT INTO devices AS d (user_id, mac, name, registered_at, registered_by) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (user_id, mac) DO UPDATE SET name = coalesce(excluded.name, d.name), registered_at = excluded.registered_at,
         registered_by = excluded.registered_by
       RETURNING ${DEVICE_COLS}`,
    ),
    renameDevice: st('rename_device', 'UPDATE devices SET name = $3 WHERE user_id = $1 AND mac = $2'),
    deleteDevice: st('delete_device', 'DELETE FROM devices WHERE user_id = $1 AND mac = $2'),
    blockCounter: st(
      'block_counter',
      `INSERT INTO counters AS c (key, count, until, expires_at) VALUES ($1, 0, $2, $2)
       ON CONFLICT (key) DO UPDATE SET until = greatest(c.until, $2), expires_at = greatest(c.expires_at, $2)`,
    ),
    clearCounters: st('clear_counters', 'DELETE FROM counters WHERE key = ANY($1::text[])'),

    // Housekeeping. Each kind of dead row through its own index, in index order; rows another
    // transaction holds are skipped (live traffic never waits on housekeeping, nor the reverse).
    deleteExpiredPasscodes: st(
      'delete_expired_passcodes',
      `DELETE FROM passcodes WHERE user_id IN (
         SELECT user_id FROM passcodes WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    ),
    revokedBefore: st(
      'revoked_before',
      'SELECT id FROM sessions WHERE revoked_at <= $1 ORDER BY revoked_at LIMIT $2 FOR UPDATE SKIP LOCKED',
    ),
    pastAbsolute: st(
      'past_absolute',
      `SELECT id FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at <= $1 AND expires_at <= $2
       ORDER BY absolute_expires_at LIMIT $3 FOR UPDATE SKIP LOCKED`,
    ),
    idleBefore: st(
      'idle_before',
      `SELECT id FROM sessions WHERE revoked_at IS NULL AND last_seen_at <= $1 AND expires_at <= $2 AND absolute_expires_at > $3
       ORDER BY last_seen_at LIMIT $4 FOR UPDATE SKIP LOCKED`,
    ),
    retiredCounts: st(
      'retired_counts',
      'SELECT session_id, count(*) AS n FROM retired_tokens WHERE session_id = ANY($1::bigint[]) GROUP BY session_id',
    ),
    deleteRetiredOfAll: st('delete_retired_of_all', 'DELETE FROM retired_tokens WHERE session_id = ANY($1::bigint[])'),
    deleteRetiredOf: st(
      'delete_retired_of',
      'DELETE FROM retired_tokens WHERE master IN (SELECT master FROM retired_tokens WHERE session_id = $1 LIMIT $2)',
    ),
    deleteSessions: st('delete_sessions', 'DELETE FROM sessions WHERE id = ANY($1::bigint[])'),
    deleteOldAudit: st(
      'delete_old_audit',
      'DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)',
    ),
    deleteExpiredCounters: st(
      'delete_expired_counters',
      `DELETE FROM counters WHERE key IN (
         SELECT key FROM counters WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    ),
    notify: st('notify', `SELECT ${notify('$1')}`),
    ping: st('ping', 'SELECT 1'),
  };
}

export { POSTGRES_SCHEMA_VERSION } from './postgres-migrations.js';

type Statements = ReturnType<typeof statements>;
type Query = pg.QueryConfig;

/** Where one StoreOps runs: the pool (each call its own transaction) or one transaction's client. */
interface Ctx {
  /** Runs one statement; failures leave as the store's typed errors. */
  q<R extends pg.QueryResultRow = pg.QueryResultRow>(query: Query): Promise<pg.QueryResult<R>>;
  /** Inside a transaction: rows read for update stay locked until it ends. */
  readonly inTx: boolean;
  /** Announces changes in this process once committed (at once on the pool; after COMMIT in a transaction). */
  changed(changes: readonly StoreChange[]): void;
  /** Runs `fn` so that its failure leaves the transaction usable (a savepoint); just `fn` on the pool. */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
}

const count = (r: pg.QueryResult): number => r.rowCount ?? 0;

/** Packs `prefix:id,id,…` payloads under NOTIFY's size limit. */
function payloads(prefix: string, ids: readonly number[]): string[] {
  const out: string[] = [];
  let current = '';
  for (const id of ids) {
    const next = current ? `${current},${id}` : `${prefix}:${id}`;
    if (next.length > PAYLOAD_MAX) {
      out.push(current);
      current = `${prefix}:${id}`;
    } else current = next;
  }
  if (current) out.push(current);
  return out;
}

/** The changes a notification names; anything unexpected means "all" (never a missed change). */
export function parseChangePayload(payload: string): StoreChange[] {
  const m = /^([su]):(\d+(?:,\d+)*)$/.exec(payload);
  if (!m) return [{ kind: 'all' }];
  const kind = m[1] === 's' ? 'session' : 'user';
  return m[2]!.split(',').map((id) => ({ kind, id: Number(id) }));
}

function operations(ctx: Ctx, st: Statements): StoreOps {
  const { q } = ctx;
  const sessions = async (query: Query): Promise<SessionRecord[]> => (await q<SessionRow>(query)).rows.map(toSession);
  return {
    async createUser(user) {
      const insert = { ...st.insertUser, values: [user.email, user.phone, user.role, user.passwordHash, user.createdAt] };
      let row: UserRow;
      try {
        // In a transaction, a failed statement would abort all of it (SQLite's would not): the
        // savepoint keeps the caller's transaction usable after a duplicate.
        row = (await ctx.savepoint(() => q<UserRow>(insert))).rows[0]!;
      } catch (err) {
        if (err instanceof DuplicateUserError) throw new DuplicateUserError(`a user with email ${user.email} already exists`);
        throw err;
      }
      return toUser(row);
    },
    async findUserByEmail(email) {
      const row = (await q<UserRow>({ ...st.userByEmail, values: [email] })).rows[0];
      return row && toUser(row);
    },
    async findUserById(id) {
      const row = (await q<UserRow>({ ...st.userById, values: [id] })).rows[0];
      return row && toUser(row);
    },
    async setPasswordHash(userId, passwordHash, ifCurrent) {
      const r =
        ifCurrent === undefined
          ? await q({ ...st.setPasswordHash, values: [passwordHash, userId] })
          : await q({ ...st.replacePasswordHash, values: [passwordHash, userId, ifCurrent] });
      if (count(r) === 0) return false;
      ctx.changed([{ kind: 'user', id: userId }]);
      return true;
    },
    async listUsers() {
      return (await q<UserRow>(st.listUsers)).rows.map(toUser);
    },
    async setUserDisabled(userId, disabled) {
      if (count(await q({ ...st.setDisabled, values: [disabled, userId] })) === 0) return false;
      ctx.changed([{ kind: 'user', id: userId }]);
      return true;
    },
    async setUserRole(userId, role) {
      if (count(await q({ ...st.setRole, values: [role, userId] })) === 0) return false;
      ctx.changed([{ kind: 'user', id: userId }]);
      return true;
    },
    async deleteUser(userId) {
      if (count(await q({ ...st.deleteUser, values: [userId] })) === 0) return false;
      ctx.changed([{ kind: 'user', id: userId }]);
      return true;
    },
    async lockUser(userId) {
      if (ctx.inTx) await q({ ...st.lockUser, values: [userId] });
    },
    async revokeUserSessions(userId, now, reason) {
      const n = (await q<{ n: number }>({ ...st.revokeUserSessions, values: [now, reason, userId] })).rows[0]!.n;
      if (n > 0) ctx.changed([{ kind: 'user', id: userId }]);
      return n;
    },

    async putPasscode(p) {
      await q({
        ...st.putPasscode,
        values: [p.userId, p.hash, p.mac, p.seenIp, p.reportedIp, p.createdAt, p.expiresAt, p.attempts, p.keyId],
      });
    },
    async getPasscode(userId) {
      const row = (await q<PasscodeRow>({ ...(ctx.inTx ? st.lockPasscode : st.getPasscode), values: [userId] })).rows[0];
      return row && toPasscode(row);
    },
    async deletePasscode(userId) {
      await q({ ...st.deletePasscode, values: [userId] });
    },
    async setPasscodeAttempts(userId, attempts) {
      await q({ ...st.setAttempts, values: [attempts, userId] });
    },
    async countPendingPasscodes(now) {
      return (await q<{ n: number }>({ ...st.pendingPasscodes, values: [now] })).rows[0]!.n;
    },

    async createSession(s) {
      const r = await q<{ id: number }>({
        ...st.insertSession,
        values: [s.userId, s.master, s.mac, s.ip, s.createdAt, s.expiresAt, s.absoluteExpiresAt, s.keyId, s.device ?? null, s.scope ?? 'full'],
      });
      return r.rows[0]!.id;
    },
    async findSessionByMaster(master) {
      return (await sessions({ ...st.sessionByMaster, values: [master] }))[0];
    },
    async findSessionById(id) {
      return (await sessions({ ...(ctx.inTx ? st.lockSessionById : st.sessionById), values: [id] }))[0];
    },
    async findRetiredToken(master) {
      const row = (await q<RetiredRow>({ ...st.retired, values: [master] })).rows[0];
      return row && toRetired(row);
    },
    async rotateSession(r) {
      const result = await q({
        ...st.rotate,
        values: [r.sessionId, r.oldMaster, r.newMaster, r.now, r.expiresAt, r.generation, r.graceUntil, r.nonce, r.keyId, r.oldKeyId],
      });
      if (count(result) !== 1) return false;
      ctx.changed([{ kind: 'session', id: r.sessionId }]);
      return true;
    },
    async touchSession(id, now) {
      const row = (await q<{ touched: boolean; present: boolean }>({ ...st.touch, values: [id, now] })).rows[0]!;
      return row.touched || !row.present;
    },
    async revokeSession(id, now, reason) {
      if (count(await q({ ...st.revoke, values: [now, reason, id] })) === 0) return false;
      ctx.changed([{ kind: 'session', id }]);
      return true;
    },
    async listOpenSessions(userId) {
      if (!ctx.inTx) return sessions({ ...st.openSessionsOf, values: [userId] });
      // Locking the sessions alone would not do: a statement sees only rows committed before it
      // began, so a login waiting on these locks would still miss the session the other login
      // just added (or lock nothing at all when there was none). The owner's row is locked first,
      // by a statement of its own; the list that follows sees every session committed before it.
      await q({ ...st.lockUser, values: [userId] });
      return sessions({ ...st.lockOpenSessionsOf, values: [userId] });
    },
    async listAllOpenSessions() {
      return sessions(st.allOpenSessions);
    },
    async countLiveSessions(b) {
      const r = await q<{ n: number }>({ ...st.countLive, values: [b.currentAfter, b.renewableAfter.absolute, b.renewableAfter.lastSeen] });
      return r.rows[0]!.n;
    },
    async sessionCounts(b) {
      const rows = (await q<{ email: string; active: number; open: number }>({
        ...st.sessionCounts,
        values: [b.currentAfter, b.renewableAfter.absolute, b.renewableAfter.lastSeen],
      })).rows;
      const activeByUser = new Map<string, number>();
      let inactive = 0;
      for (const r of rows) {
        if (r.active > 0) activeByUser.set(r.email, r.active);
        inactive += r.open - r.active;
      }
      return { activeByUser, inactive };
    },

    async countSessionsByKey(now) {
      const rows = (await q<{ key_id: number; n: number }>({ ...st.countByKey, values: [now] })).rows;
      return new Map(rows.map((r) => [r.key_id, r.n]));
    },
    async revokeByKey(keyId, now, reason) {
      const row = (await q<{ sessions: number; passcodes: number }>({ ...st.revokeByKey, values: [now, reason, keyId] })).rows[0]!;
      if (row.sessions > 0) ctx.changed([{ kind: 'all' }]);
      return { sessions: row.sessions, passcodes: row.passcodes };
    },

    async appendAudit(events) {
      if (events.length === 0) return;
      const column = <T>(pick: (e: AuditEvent) => T): T[] => events.map(pick);
      await q({
        ...st.insertAudit,
        values: [
          column((e) => e.at),
          column((e) => e.action),
          column((e) => e.outcome),
          column((e) => e.userId ?? null),
          column((e) => e.email ?? null),
          column((e) => e.actor ?? null),
          column((e) => e.ip ?? null),
          column((e) => e.mac ?? null),
          column((e) => e.sessionId ?? null),
          column((e) => (e.detail ? JSON.stringify(e.detail) : null)),
        ],
      });
    },
    async queryAudit(query) {
      const { text, values } = auditQuery(query);
      return (await q<AuditRow>({ text, values })).rows.map(toAudit);
    },

    async hitCounters(keys, now, expiresAt) {
      if (keys.length === 0) return [];
      // Each key once (a row cannot be updated twice by one statement), sorted (lock order).
      const unique = [...new Set(keys)].sort();
      const rows = (await q<CounterRow>({ ...st.hitCounters, values: [unique, now, expiresAt] })).rows;
      const byKey = new Map(rows.map((r) => [r.key, toCounter(r)]));
      return keys.map((k) => byKey.get(k)!);
    },
    async readCounters(keys, now) {
      if (keys.length === 0) return [];
      const statement = ctx.inTx ? st.readCountersForUpdate : st.readCounters;
      if (ctx.inTx) await q({ ...st.lockCounterKeys, values: [[...new Set(keys)]] });
      const rows = (await q<CounterRow>({ ...statement, values: [[...new Set(keys)], now] })).rows;
      const byKey = new Map(rows.map((r) => [r.key, toCounter(r)]));
      return keys.map((k) => byKey.get(k));
    },
    async blockCounter(key, until) {
      await q({ ...st.blockCounter, values: [key, until] });
    },
    async clearCounters(keys) {
      if (keys.length > 0) await q({ ...st.clearCounters, values: [[...new Set(keys)]] });
    },

    async recordNode(node) {
      await q({ ...st.recordNode, values: [node.id, node.currentKeyId, node.seenAt] });
    },
    async listNodes(since) {
      const rows = (await q<{ id: string; current_key_id: number; seen_at: number }>({ ...st.listNodes, values: [since] })).rows;
      return rows.map((r) => ({ id: r.id, currentKeyId: Number(r.current_key_id), seenAt: Number(r.seen_at) }));
    },
    async forgetNode(id) {
      await q({ ...st.forgetNode, values: [id] });
    },

    async listFactors(userId) {
      return (await q<FactorRow>({ ...st.listFactors, values: [userId] })).rows.map(toFactor);
    },
    async putFactor(f) {
      await q({ ...st.putFactor, values: [f.userId, f.factor, f.confirmedAt, f.mustEnroll, f.lastStep, f.createdAt] });
    },
    async deleteFactor(userId, factor) {
      return count(await q({ ...st.deleteFactor, values: [userId, factor] })) === 1;
    },
    async useFactorStep(userId, factor, step) {
      return count(await q({ ...st.useFactorStep, values: [userId, factor, step] })) === 1;
    },
    async getSecret(userId, kind) {
      const row = (await q<SecretRow>({ ...(ctx.inTx ? st.lockSecret : st.getSecret), values: [userId, kind] })).rows[0];
      return row && toSecret(row);
    },
    async putSecret(r) {
      await q({ ...st.putSecret, values: [r.userId, r.kind, r.keyId, r.sealed, r.updatedAt] });
    },
    async deleteSecret(userId, kind) {
      return count(await q({ ...st.deleteSecret, values: [userId, kind] })) === 1;
    },
    async listSecretsByKey(keyId, limit) {
      return (await q<SecretRow>({ ...st.secretsByKey, values: [keyId, limit] })).rows.map(toSecret);
    },
    async resealSecret(userId, kind, fromKeyId, r) {
      return count(await q({ ...st.resealSecret, values: [userId, kind, fromKeyId, r.keyId, r.sealed, r.updatedAt] })) === 1;
    },
    async putRecoveryPasscode(p) {
      await q({
        ...st.putRecoveryPasscode,
        values: [p.userId, p.hash, p.mac, p.seenIp, p.reportedIp, p.createdAt, p.expiresAt, p.attempts, p.keyId],
      });
    },
    async getRecoveryPasscode(userId) {
      const row = (await q<PasscodeRow>({ ...(ctx.inTx ? st.lockRecoveryPasscode : st.getRecoveryPasscode), values: [userId] })).rows[0];
      return row && toPasscode(row);
    },
    async deleteRecoveryPasscode(userId) {
      await q({ ...st.deleteRecoveryPasscode, values: [userId] });
    },
    async setRecoveryPasscodeAttempts(userId, attempts) {
      await q({ ...st.setRecoveryAttempts, values: [userId, attempts] });
    },
    async putRecoveryCodes(userId, hashes, now) {
      await q({ ...st.putRecoveryCodes, values: [userId, [...hashes], now] });
    },
    async useRecoveryCode(userId, hash) {
      return count(await q({ ...st.useRecoveryCode, values: [userId, hash] })) === 1;
    },
    async countRecoveryCodes(userId) {
      return (await q<{ n: number }>({ ...st.countRecoveryCodes, values: [userId] })).rows[0]!.n;
    },

    async listDevices(userId) {
      return (await q<DeviceRow>({ ...st.listDevices, values: [userId] })).rows.map(toDevice);
    },
    async getDevice(userId, mac) {
      const row = (await q<DeviceRow>({ ...st.getDevice, values: [userId, mac] })).rows[0];
      return row && toDevice(row);
    },
    async recordDeviceLogin(l) {
      // Each statement is atomic on its own, and each decides "new" on the row as committed (an
      // INSERT … DO NOTHING waits for a racing insert; an UPDATE re-checks its WHERE after a
      // racing one): of two logins from one new device, exactly one is told so.
      const device = [l.userId, l.mac, l.name, l.at, l.ip];
      const newDevice =
        count(await q({ ...st.insertSeenDevice, values: device })) === 1 || count(await q({ ...st.firstUseDevice, values: device })) === 1;
      if (!newDevice) await q({ ...st.seenDevice, values: device });
      const address = [l.userId, l.addressGroup, l.at];
      const newAddress = count(await q({ ...st.insertSeenAddress, values: address })) === 1;
      if (!newAddress) await q({ ...st.seenAddress, values: address });
      return { newDevice, newAddress };
    },
    async registerDevice(userId, mac, name, at, by) {
      return toDevice((await q<DeviceRow>({ ...st.registerDevice, values: [userId, mac, name, at, by] })).rows[0]!);
    },
    async renameDevice(userId, mac, name) {
      return count(await q({ ...st.renameDevice, values: [userId, mac, name] })) === 1;
    },
    async deleteDevice(userId, mac) {
      return count(await q({ ...st.deleteDevice, values: [userId, mac] })) === 1;
    },
  };
}

/** The audit query for a combination of filters (unnamed: there are many combinations, all cheap to plan). */
function auditQuery(query: AuditQuery): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const param = (v: unknown): string => {
    values.push(v);
    return `$${values.length}`;
  };
  if (query.email !== undefined) where.push(`email = ${param(query.email)}`);
  if (query.action !== undefined) {
    if (query.action.endsWith('*')) {
      // A prefix as a range on the index; the column's "C" collation makes it byte order, as in SQLite.
      const prefix = query.action.slice(0, -1);
      where.push(`action >= ${param(prefix)} AND action < ${param(prefix + '\uffff')}`);
    } else where.push(`action = ${param(query.action)}`);
  }
  if (query.actor !== undefined) where.push(`actor = ${param(query.actor)}`);
  if (query.actor !== undefined) where.push(`actor = ${param(query.actor)}`);
  if (query.outcome !== undefined) where.push(`outcome = ${param(query.outcome)}`);
  if (query.since !== undefined) where.push(`at >= ${param(query.since)}`);
  if (query.until !== undefined) where.push(`at < ${param(query.until)}`);
  if (query.beforeId !== undefined) where.push(`id < ${param(query.beforeId)}`);
  const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
  return { text: `SELECT ${AUDIT_COLS} FROM audit${filter} ORDER BY id DESC LIMIT ${param(query.limit)}`, values };
}

// SQLSTATEs: 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available,
// 57014 query_canceled (statement_timeout: a lock held beyond the wait).
const BUSY_CODES = new Set(['40001', '40P01', '55P03', '57014']);
// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections,
// 25006 read_only_sql_transaction (a standby after failover); class 08 is connection exceptions.
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '53300', '25006']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const UNAVAILABLE_MESSAGES = /Connection terminated|Query read timeout|not queryable|Client was closed|after calling end on the pool|Connection ended/i;
const ACQUIRE_TIMEOUT = /timeout exceeded when trying to connect/i;

type ErrorLike = Error & { code?: unknown; constraint?: unknown };

/** Whether node-postgres or the server failed to carry out the statement for want of a connection. */
function isUnavailable(err: ErrorLike): boolean {
  const code = typeof err.code === 'string' ? err.code : '';
  return (
    UNAVAILABLE_CODES.has(code) || code.startsWith('08') || NETWORK_CODES.has(code) || UNAVAILABLE_MESSAGES.test(err.message) || ACQUIRE_TIMEOUT.test(err.message)
  );
}

/** The URL as it may be shown: the password replaced. */
function shownUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreConfigError('the store URL is not a URL: expected postgres://user:password@host:port/database');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new StoreConfigError(`the store URL must start with postgres:// (got ${parsed.protocol}//…)`);
  }
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/** Why the store could not open, named for an operator: the URL (no password) and the cause. */
function openError(err: unknown, url: string, shown: string, connectTimeoutMs: number): Error {
  if (err instanceof StoreConfigError) return err;
  const e = err as ErrorLike;
  const code = typeof e.code === 'string' ? e.code : '';
  let cause = e.message;
  if (code === 'ECONNREFUSED') cause = 'connection refused (is PostgreSQL running and listening there?)';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') cause = 'host not found';
  else if (ACQUIRE_TIMEOUT.test(e.message) || /connection timeout/i.test(e.message)) cause = `timeout: no connection within ${connectTimeoutMs} ms`;
  else if (code === '42501') cause = `${e.message} (the role must own the database, or have CREATE on its schema)`;
  else if (code === 'ENOENT') cause = `a file named in the URL cannot be read: ${e.message}`;
  let message = `cannot open the PostgreSQL store at ${shown}: ${cause}`;
  // Belt and braces: nothing of the password leaves in a message, whatever the driver said.
  const password = safeDecode(new URL(url).password);
  if (password) message = message.split(password).join('***');
  return new StoreConfigError(message, { cause: err });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Ends a client without waiting long for a link that may be dead: node-postgres's end() waits for
 * the server to close the socket, which a vanished server never does.
 */
async function endQuietly(client: pg.Client, ms = 1000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    client.end().then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms).unref();
    }),
  ]);
  clearTimeout(timer);
  if (!ended) (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * The change feed: a dedicated connection (not pooled) LISTENs on the channel, and each
 * notification becomes StoreChanges for the listeners. While that connection is down nothing
 * another node commits can be heard: `coherent` is false, listeners are told `all` when it is lost
 * and again once it is back (notifications sent meanwhile are gone), and it reconnects by itself.
 */
class ChangeFeed {
  readonly #listeners = new Set<(change: StoreChange) => void>();
  readonly #config: pg.ClientConfig;
  readonly #channel: string;
  readonly #heartbeatMs: number;
  readonly #log: Logger | undefined;
  #client: pg.Client | undefined;
  #coherent = false;
  #closed = false;
  #retryMs = RECONNECT_FIRST_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(config: pg.ClientConfig, channel: string, heartbeatMs: number, log: Logger | undefined) {
    this.#config = config;
    this.#channel = channel;
    this.#heartbeatMs = heartbeatMs;
    this.#log = log;
  }

  get coherent(): boolean {
    return this.#coherent;
  }

  on(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(changes: readonly StoreChange[]): void {
    for (const change of changes) {
      for (const listener of this.#listeners) {
        try {
          listener(change);
        } catch (err) {
          this.#log?.error({ err }, 'store change listener failed');
        }
      }
    }
  }

  /** Connects; throws when the database cannot be reached (at open, that is a config error). */
  async start(): Promise<void> {
    await this.#connect();
    this.#coherent = true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#coherent = false;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#heartbeat);
    const client = this.#client;
    this.#client = undefined;
    if (client) await endQuietly(client);
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#config);
    // Every event of a client that is not (or no longer) the current one is ignored; the handlers
    // stay attached so a late error can never go unhandled.
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client, new Error('connection ended')));
    client.on('notification', (n) => {
      if (client === this.#client && n.channel === this.#channel) this.emit(parseChangePayload(n.payload ?? ''));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${this.#channel}`);
    } catch (err) {
      void endQuietly(client);
      throw err;
    }
    if (this.#closed) {
      void endQuietly(client);
      return;
    }
    this.#client = client;
    this.#retryMs = RECONNECT_FIRST_MS;
    // Keepalive alone finds a dead link only after the kernel's probes (minutes); a query that
    // must answer in time finds it within two heartbeats.
    this.#heartbeat = setInterval(() => {
      client.query({ text: 'SELECT 1', query_timeout: this.#heartbeatMs } as pg.QueryConfig).catch((err: Error) => this.#lost(client, err));
    }, this.#heartbeatMs).unref();
  }

  #lost(client: pg.Client, err: Error): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    clearInterval(this.#heartbeat);
    void endQuietly(client);
    if (this.#closed) return;
    this.#log?.warn({ err }, 'database change feed lost: caches are bypassed until it is back');
    this.#coherent = false;
    this.emit([{ kind: 'all' }]);
    this.#reconnect();
  }

  #reconnect(): void {
    this.#retryTimer = setTimeout(() => {
      this.#connect().then(
        () => {
          if (this.#closed || !this.#client) return;
          // Listening again: whatever was committed while deaf is covered by `all`, whatever
          // commits from now on is announced.
          this.emit([{ kind: 'all' }]);
          this.#coherent = true;
          this.#log?.info('database change feed restored');
        },
        (err: Error) => {
          if (this.#closed) return;
          this.#log?.debug({ err, retryMs: this.#retryMs }, 'database change feed still down');
          this.#retryMs = Math.min(this.#retryMs * 2, RECONNECT_MAX_MS);
          this.#reconnect();
        },
      );
    }, this.#retryMs).unref();
  }
}

/**
 * Opens the PostgreSQL store: checks the connection and the credentials, brings the schema up to
 * date (once, whoever starts first), and starts listening for other nodes' changes. Every cause
 * of failure here is a StoreConfigError naming the URL (without its password) and the cause.
 */
export async function openPostgresStore(opts: PostgresStoreOptions): Promise<Store> {
  const channel = opts.channel ?? DEFAULT_CHANNEL;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(channel)) {
    throw new StoreConfigError(`the store's notification channel must be a plain lowercase identifier (got ${JSON.stringify(channel)})`);
  }
  const shown = shownUrl(opts.url);
  const poolMax = opts.poolMax ?? 10;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const statementTimeoutMs = opts.statementTimeoutMs ?? 5000;
  const heartbeatMs = opts.heartbeatMs ?? 2000;
  const log = opts.log;

  // keepAlive: a connection to a vanished server is found dead instead of waiting forever.
  const base: pg.ClientConfig = {
    connectionString: opts.url,
    types: TYPES,
    keepAlive: true,
    application_name: 'hellwall',
    connectionTimeoutMillis: connectTimeoutMs,
  };

  let version: number;
  try {
    // Its own connection, without the request timeouts: a migration may take longer than a request.
    const client = new pg.Client(base);
    client.on('error', (err) => log?.warn({ err }, 'database connection failed while migrating'));
    await client.connect();
    try {
      version = await migratePostgres(client);
    } finally {
      await endQuietly(client);
    }
  } catch (err) {
    throw openError(err, opts.url, shown, connectTimeoutMs);
  }

  const pool = new pg.Pool({
    ...base,
    max: poolMax,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + QUERY_TIMEOUT_SLACK_MS,
    // A transaction left open by a stuck caller must not hold its row locks for long.
    idle_in_transaction_session_timeout: Math.max(1000, statementTimeoutMs * 2),
  });
  // An idle pooled connection that fails (server restart, network) is dropped by the pool; the
  // event must be handled or it would end the process.
  pool.on('error', (err) => log?.warn({ err }, 'idle database connection failed'));

  const feed = new ChangeFeed(base, channel, heartbeatMs, log);
  try {
    await feed.start();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw openError(err, opts.url, shown, connectTimeoutMs);
  }
  log?.debug({ url: shown, schemaVersion: version, poolMax }, 'database open');

  /** A node-postgres or server failure as the store's typed error; anything else unchanged. */
  const mapError = (err: unknown): unknown => {
    if (!(err instanceof Error)) return err;
    if (err instanceof StoreBusyError || err instanceof StoreUnavailableError || err instanceof StoreConfigError || err instanceof DuplicateUserError) {
      return err;
    }
    const e = err as ErrorLike;
    if (e.code === '23505' && e.constraint === 'users_email_key') return new DuplicateUserError(e.message);
    if (typeof e.code === 'string' && BUSY_CODES.has(e.code)) return new StoreBusyError(`database busy: ${e.message}`, { cause: err });
    if (ACQUIRE_TIMEOUT.test(e.message)) {
      return new StoreUnavailableError(
        pool.totalCount >= poolMax
          ? `database pool exhausted: all ${poolMax} connections stayed busy for ${connectTimeoutMs} ms`
          : `database unreachable: no connection within ${connectTimeoutMs} ms`,
        { cause: err },
      );
    }
    if (isUnavailable(e)) return new StoreUnavailableError(`database unavailable: ${e.message}`, { cause: err });
    return err;
  };

  const st = statements(channel);
  const poolCtx: Ctx = {
    inTx: false,
    async q(query) {
      try {
        return await pool.query(query);
      } catch (err) {
        throw mapError(err);
      }
    },
    changed: (changes) => feed.emit(changes),
    savepoint: (fn) => fn(),
  };
  const poolOps = operations(poolCtx, st);

  const acquire = async (): Promise<pg.PoolClient> => {
    try {
      return await pool.connect();
    } catch (err) {
      throw mapError(err);
    }
  };

  /**
   * One transaction on one pooled client: BEGIN (READ COMMITTED, PostgreSQL's default, made
   * explicit), `fn`, COMMIT, then this process's changes are announced; ROLLBACK when anything
   * throws. A client that failed is destroyed rather than returned to the pool.
   */
  const withTransaction = async <T>(fn: (ctx: Ctx) => Promise<T>): Promise<T> => {
    const client = await acquire();
    let broken = false;
    let over = false;
    let failure: unknown;
    const changes: StoreChange[] = [];
    const onError = (err: Error): void => {
      broken = true;
      log?.warn({ err }, 'database connection failed inside a transaction');
    };
    client.on('error', onError);
    const ctx: Ctx = {
      inTx: true,
      async q(query) {
        if (over) throw new Error('this transaction has ended: use its tx only inside transaction(fn)');
        try {
          return await client.query(query);
        } catch (err) {
          // After a failed statement PostgreSQL refuses the rest of the transaction (25P02): the
          // caller is told the first failure, the cause, each time.
          if (failure !== undefined && (err as ErrorLike).code === '25P02') throw failure;
          const mapped = mapError(err);
          failure ??= mapped;
          if (mapped instanceof StoreUnavailableError) broken = true;
          throw mapped;
        }
      },
      changed: (c) => void changes.push(...c),
      async savepoint(fn) {
        const before = failure;
        await ctx.q({ text: 'SAVEPOINT hw_savepoint' });
        try {
          const result = await fn();
          await ctx.q({ text: 'RELEASE SAVEPOINT hw_savepoint' });
          return result;
        } catch (err) {
          if (!broken) {
            await ctx.q({ text: 'ROLLBACK TO SAVEPOINT hw_savepoint' });
            failure = before;
          }
          throw err;
        }
      },
    };
    try {
      await ctx.q({ text: 'BEGIN ISOLATION LEVEL READ COMMITTED' });
      const result = await fn(ctx);
      const commit = await ctx.q({ text: 'COMMIT' });
      // COMMIT of a transaction in which a statement failed (the caller caught the error and
      // went on) rolls back and says so only in its command tag.
      if (commit.command !== 'COMMIT') throw failure ?? new StoreBusyError('the transaction was rolled back by the database');
      over = true;
      feed.emit(changes);
      return result;
    } catch (err) {
      if (!broken && !over) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
      }
      throw mapError(err);
    } finally {
      over = true;
      client.removeListener('error', onError);
      client.release(broken);
    }
  };

  let closing: Promise<void> | undefined;
  const store: Store = {
    ...poolOps,
    backend: 'postgres',

    transaction: (fn) => withTransaction((ctx) => fn(operations(ctx, st))),

    onChange: (listener) => feed.on(listener),
    get coherent() {
      return feed.coherent;
    },
    refresh() {
      // Changes are pushed (LISTEN/NOTIFY): nothing to poll.
    },

    deleteExpired: (now, policy) =>
      withTransaction(async (ctx): Promise<ExpiredCounts> => {
        const { q } = ctx;
        const limit = policy.batch;
        const passcodes = count(await q({ ...st.deleteExpiredPasscodes, values: [now, limit] }));
        // Dead sessions, each kind through its own index; the three kinds are disjoint. The token
        // must have expired too: until then it still answers authorized, idle or not [P-4.5].
        const ids = (await q<{ id: number }>({ ...st.revokedBefore, values: [now - policy.keepRevokedMs, limit] })).rows.map((r) => r.id);
        if (ids.length < limit) {
          ids.push(...(await q<{ id: number }>({ ...st.pastAbsolute, values: [now, now, limit - ids.length] })).rows.map((r) => r.id));
        }
        if (ids.length < limit) {
          const idle = await q<{ id: number }>({ ...st.idleBefore, values: [now - policy.idleMs, now, now, limit - ids.length] });
          ids.push(...idle.rows.map((r) => r.id));
        }
        // Retired tokens are deleted here rather than by the cascade, which would be unbounded
        // (one per renewal) and uncounted, and within the same budget, session by session: a
        // session goes only once none of its retired tokens is left (as the SQLite store does).
        const counts = new Map(
          ids.length === 0
            ? []
            : (await q<{ session_id: number; n: number }>({ ...st.retiredCounts, values: [ids] })).rows.map((r) => [r.session_id, r.n]),
        );
        const gone: number[] = [];
        let budget = limit;
        let partial: { id: number; n: number } | undefined;
        for (const id of ids) {
          const n = Math.min(counts.get(id) ?? 0, budget);
          if (n === budget) {
            // It may have more: the next call finishes it.
            if (n > 0) partial = { id, n };
            break;
          }
          budget -= n;
          gone.push(id);
        }
        let retiredTokens = 0;
        if (gone.length > 0) retiredTokens += count(await q({ ...st.deleteRetiredOfAll, values: [gone] }));
        if (partial) retiredTokens += count(await q({ ...st.deleteRetiredOf, values: [partial.id, partial.n] }));
        if (gone.length > 0) await q({ ...st.deleteSessions, values: [gone] });
        for (const payload of payloads('s', gone)) await q({ ...st.notify, values: [payload] });
        const keepAudit = policy.keepAuditMs ?? 0;
        const auditRows = keepAudit > 0 ? count(await q({ ...st.deleteOldAudit, values: [now - keepAudit, limit] })) : 0;
        const counters = count(await q({ ...st.deleteExpiredCounters, values: [now, limit] }));
        ctx.changed(gone.map((id) => ({ kind: 'session', id })));
        return { passcodes, sessions: gone.length, retiredTokens, auditRows, counters };
      }),

    async exclusive(name, fn) {
      const client = await acquire();
      let broken = false;
      const onError = (err: Error): void => {
        broken = true;
        log?.warn({ err, lock: name }, 'database connection holding an exclusive lock failed');
      };
      client.on('error', onError);
      const key = `hellwall:${name}`;
      try {
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [key]);
        if (!r.rows[0]!.ok) return undefined;
        try {
          return await fn();
        } finally {
          await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => {
            broken = true; // the lock goes with the connection
          });
        }
      } catch (err) {
        throw mapError(err);
      } finally {
        client.removeListener('error', onError);
        client.release(broken);
      }
    },

    async ping() {
      await poolCtx.q(st.ping);
    },
    async schemaVersion() {
      try {
        return await versionOf(pool);
      } catch (err) {
        throw mapError(err);
      }
    },
    close() {
      closing ??= (async () => {
        await feed.close();
        await pool.end();
      })();
      return closing;
    },
  };
  return store;
}
