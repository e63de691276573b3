/**
 * The SQLite backend: one better-sqlite3 connection, synchronous underneath, behind the async Store.
 *
 * Transactions. better-sqlite3's own `db.transaction()` cannot span an `await`, so
 * `transaction(fn)` opens one by hand (BEGIN IMMEDIATE … COMMIT or ROLLBACK) around `await fn(tx)`.
 * The connection is one, so while that transaction is open, anything else run on it would run
 * inside it: seeing its uncommitted rows, and committing or rolling back with it. A mutex (a FIFO
 * of waiting tasks) therefore holds every transaction, and every call made on the Store itself
 * while one is held or waiting, reads as much as writes, waits its turn and then runs on its own.
 * When nothing holds it (almost always) a Store call runs at once, synchronously, with no cost
 * beyond one boolean check: the token check's speed depends on that. The `tx` handle's methods run
 * directly (they are the transaction), and refuse once it has ended. `fn` must use only `tx`: a
 * Store call (or a nested `transaction()`) awaited inside it waits for the transaction that is
 * waiting for it, forever.
 *
 * The change feed. After each commit of this connection's own writes, the store announces what
 * changed (StoreChange) to its listeners, synchronously: at once for a Store call, at COMMIT for a
 * transaction (nothing on rollback). Other processes on the file (the CLI, another worker) cannot
 * be heard; `refresh()` polls `PRAGMA data_version`, which moves when another connection commits
 * (never for this connection's own commits, hence the direct announcements), and announces `all`.
 * Touches are not announced: they only move last activity, and come with every check.
 */
import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Logger } from '../deps.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import { SqliteReader } from './sqlite-reader.js';
import {
  DuplicateUserError,
  StoreBusyError,
  StoreConfigError,
  type AuditEvent,
  type AuditQuery,
  type AuditRecord,
  type DeviceLogin,
  type DeviceNovelty,
  type ExpiredCounts,
  type ExpiryPolicy,
  type LiveBounds,
  type SessionCounts,
  type Store,
  type StoreChange,
  type StoreOps,
  type Tx,
} from './store.js';
import { toAudit, toCounter, toPasscode, toRetired, toSession, toUser, type AuditRow, type CounterRow, type PasscodeRow, type RetiredRow, type SessionRow, type UserRow } from './rows.js';
import { toFactor, toSecret, type FactorRow, type SecretRow } from './rows.js';
import { DEVICE_COLS, toDevice, type DeviceRow } from './rows.js';



// SQLITE_BUSY and its extended codes (better-sqlite3 reports extended codes: SQLITE_BUSY_SNAPSHOT…).
const isBusy = (err: unknown): boolean => {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_'));
};

/** SQLite's lock contention leaves the store as a StoreBusyError; everything else as it was thrown. */
const translate = (err: unknown): unknown => (isBusy(err) ? new StoreBusyError((err as Error).message, { cause: err }) : err);

// Reads whose cost grows with the data (counts for /metrics, stats, the key commands): run by the
// reader thread (sqlite-reader.ts) when called on the Store, on the connection inside a transaction.
// LiveBounds in SQL: a current token, or one still renewable (inside both limits).
const LIVE = '(s.expires_at > @currentAfter OR (s.absolute_expires_at > @absolute AND s.last_seen_at > @lastSeen))';
const COUNT_READS = {
  countLive: `SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.revoked_at IS NULL AND u.disabled = 0 AND ${LIVE}`,
  sessionCounts: `SELECT u.email AS email, sum(CASE WHEN ${LIVE} THEN 1 ELSE 0 END) AS active, count(*) AS open
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.revoked_at IS NULL AND u.disabled = 0 GROUP BY u.id`,
  pendingPasscodes: 'SELECT count(*) FROM passcodes WHERE expires_at > ?',
  countByKey: 'SELECT key_id, count(*) AS n FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at > ? GROUP BY key_id',
} as const;
type LiveParams = { currentAfter: number; absolute: number; lastSeen: number };
const liveParams = (b: LiveBounds): LiveParams => ({ currentAfter: b.currentAfter, absolute: b.renewableAfter.absolute, lastSeen: b.renewableAfter.lastSeen });
const toSessionCounts = (rows: Array<{ email: string; active: number; open: number }>): SessionCounts => {
  const activeByUser = new Map<string, number>();
  let inactive = 0;
  for (const r of rows) {
    if (r.active > 0) activeByUser.set(r.email, r.active);
    inactive += r.open - r.active;
  }
  return { activeByUser, inactive };
};

const SESSION_SELECT = `
  SELECT s.*, u.email AS user_email, u.role AS user_role, u.disabled AS user_disabled
  FROM sessions s JOIN users u ON u.id = s.user_id`;

/**
 * Applies every migration newer than the database's `user_version`, each in its own IMMEDIATE
 * transaction that first reads the version again: two processes opening one file at once apply
 * each migration once (the second waits for the write lock, then finds it done).
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  const version = (): number => db.pragma('user_version', { simple: true }) as number;
  for (const m of migrations) {
    if (m.version <= version()) continue;
    // PRAGMA foreign_keys is a no-op inside a transaction: it is switched around it.
    const foreignKeys = db.pragma('foreign_keys', { simple: true }) === 1;
    if (m.foreignKeysOff && foreignKeys) db.pragma('foreign_keys = OFF');
    try {
      db.transaction(() => {
        if (m.version <= version()) return;
        db.exec(m.sql);
        if (m.foreignKeysOff) {
          const broken = db.pragma('foreign_key_check') as unknown[];
          if (broken.length > 0) {
            throw new Error(`migration ${m.version} (${m.name}) would leave ${broken.length} broken foreign keys; nothing was changed`);
          }
        }
        db.pragma(`user_version = ${m.version}`);
      }).immediate();
    } finally {
      if (m.foreignKeysOff && foreignKeys) db.pragma('foreign_keys = ON');
    }
  }
  return version();
}

/**
 * One task at a time, in the order they asked; `held` is true from the first task's start until the
 * last waiting one has finished (a release hands over directly, so nothing slips in between).
 */
class Mutex {
  #held = false;
  readonly #waiting: Array<() => void> = [];

  get held(): boolean {
    return this.#held;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#held) return new Promise<void>((resolve) => this.#waiting.push(resolve)).then(() => this.#start(task));
    this.#held = true;
    return this.#start(task);
  }

  #start<T>(task: () => Promise<T>): Promise<T> {
    let done: Promise<T>;
    try {
      done = task();
    } catch (err) {
      done = Promise.reject(err);
    }
    return done.finally(() => {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#held = false;
    });
  }
}

/** Where an operation puts the changes it made, to be announced once they are committed. */
type Changes = StoreChange[];

/**
 * The data operations, synchronous, on whatever transaction is open (or none: each statement then
 * commits on its own, and those that must go together wrap themselves in one). A change is pushed
 * only once the operation's statements have all succeeded.
 */
type SyncOps = {
  [K in keyof StoreOps]: (changes: Changes, ...args: Parameters<StoreOps[K]>) => Awaited<ReturnType<StoreOps[K]>>;
};

type Runner = (op: (changes: Changes, ...args: unknown[]) => unknown, args: unknown[]) => Promise<unknown>;

/** The async face of `ops`: every method handed to `run` with its arguments. */
function bind(ops: SyncOps, run: Runner): StoreOps {
  const bound: Record<string, unknown> = {};
  for (const [name, op] of Object.entries(ops) as Array<[string, (changes: Changes, ...args: unknown[]) => unknown]>) {
    bound[name] = (...args: unknown[]) => run(op, args);
  }
  return bound as unknown as StoreOps;
}

/**
 * Opens (creating if needed) the SQLite database, applies migrations and prepares every statement
 * once. WAL lets readers run beside the single writer; synchronous=FULL because an acknowledged
 * login or revocation must survive a crash.
 */
export function openSqliteStore(file: string, log?: Logger): Store {
  // Create the file 0600 before SQLite does: it holds password hashes, and SQLite gives the -wal and
  // -shm files the main file's permissions.
  if (file !== ':memory:') closeSync(openSync(file, 'a', 0o600));
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Migrations run under better-sqlite3's default 5 s lock wait: at start-up, waiting for another
  // process's migration beats failing.
  const version = migrate(db);
  const latest = MIGRATIONS.at(-1)!.version;
  if (version > latest) {
    db.close();
    throw new StoreConfigError(`the database ${file} is at schema version ${version}, newer than this Hellwall knows (${latest}): upgrade Hellwall`);
  }
  // SQLite waits for a lock synchronously, blocking the event loop: keep the wait short. Writers
  // are brief (the CLI, another worker); a write that still finds the lock answers E_BUSY.
  db.pragma('busy_timeout = 100');
  log?.debug({ file, schemaVersion: version }, 'database open');

  const st = {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    insertUser: db.prepare<[string, string, string, string, number]>(
      'INSERT INTO users (email, phone, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *',
    ),
    userByEmail: db.prepare<[string]>('SELECT * FROM users WHERE email = ?'),
    userById: db.prepare<[number]>('SELECT * FROM users WHERE id = ?'),
    setPasswordHash: db.prepare<[string, number]>('UPDATE users SET password_hash = ? WHERE id = ?'),
    replacePasswordHash: db.prepare<[string, number, string]>('UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?'),
    listUsers: db.prepare('SELECT * FROM users ORDER BY id'),
    setDisabled: db.prepare<[number, number]>('UPDATE users SET disabled = ? WHERE id = ?'),
    setRole: db.prepare<[string, number]>('UPDATE users SET role = ? WHERE id = ?'),
    deleteUser: db.prepare<[number]>('DELETE FROM users WHERE id = ?'),
    revokeUserSessions: db.prepare<[number, string, number]>(
      'UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND revoked_at IS NULL',
    ),
    putPasscode: db.prepare(
      `INSERT OR REPLACE INTO passcodes (user_id, hash, mac, seen_ip, reported_ip, created_at, expires_at, attempts, key_id)
       VALUES (@userId, @hash, @mac, @seenIp, @reportedIp, @createdAt, @expiresAt, @attempts, @keyId)`,
    ),
    getPasscode: db.prepare<[number]>('SELECT * FROM passcodes WHERE user_id = ?'),
    deletePasscode: db.prepare<[number]>('DELETE FROM passcodes WHERE user_id = ?'),
    setAttempts: db.prepare<[number, number]>('UPDATE passcodes SET attempts = ? WHERE user_id = ?'),
    insertSession: db.prepare(
      `INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at, key_id, device, scope)
       VALUES (@userId, @master, @mac, @ip, @createdAt, @createdAt, @expiresAt, @absoluteExpiresAt, @keyId, @device, @scope)`,
    ),
    sessionByMaster: db.prepare<[Buffer]>(`${SESSION_SELECT} WHERE s.master = ?`),
    sessionById: db.prepare<[number]>(`${SESSION_SELECT} WHERE s.id = ?`),
    openSessionsOf: db.prepare<[number]>(`${SESSION_SELECT} WHERE s.user_id = ? AND s.revoked_at IS NULL ORDER BY s.created_at, s.id`),
    pendingPasscodes: db.prepare<[number]>(COUNT_READS.pendingPasscodes).pluck(),
    allOpenSessions: db.prepare(`${SESSION_SELECT} WHERE s.revoked_at IS NULL ORDER BY s.created_at, s.id`),
    retired: db.prepare<[Buffer]>('SELECT * FROM retired_tokens WHERE master = ?'),
    insertRetired: db.prepare(
      `INSERT OR REPLACE INTO retired_tokens (master, session_id, generation, retired_at, grace_until, nonce, key_id, rotate_key_id)
       VALUES (@oldMaster, @sessionId, @generation, @now, @graceUntil, @nonce, @oldKeyId, @keyId)`,
    ),
    rotate: db.prepare(
      `UPDATE sessions SET master = @newMaster, key_id = @keyId, generation = generation + 1, expires_at = @expiresAt,
         last_seen_at = @now
       WHERE id = @sessionId AND master = @oldMaster AND generation = @generation AND revoked_at IS NULL`,
    ),
    touch: db.prepare<[number, number]>('UPDATE sessions SET last_seen_at = ? WHERE id = ?'),
    revoke: db.prepare<[number, string, number]>(
      'UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL',
    ),
    countByKey: db.prepare<[number]>(COUNT_READS.countByKey),
    revokeByKey: db.prepare<[number, string, number]>(
      'UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE key_id = ? AND revoked_at IS NULL',
    ),
    deletePasscodesByKey: db.prepare<[number]>('DELETE FROM passcodes WHERE key_id = ?'),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
    syncFull: db.prepare('PRAGMA synchronous = FULL'),
    userVersion: db.prepare('PRAGMA user_version').pluck(),
    countLive: db.prepare<[LiveParams]>(COUNT_READS.countLive).pluck(),
    sessionCounts: db.prepare<[LiveParams]>(COUNT_READS.sessionCounts),
    insertAudit: db.prepare(
      `INSERT INTO audit (at, action, outcome, user_id, email, actor, ip, mac, session_id, detail)
       VALUES (@at, @action, @outcome, @userId, @email, @actor, @ip, @mac, @sessionId, @detail)`,
    ),
    deleteOldAudit: db.prepare<[number, number]>(
      'DELETE FROM audit WHERE id IN (SELECT id FROM audit INDEXED BY audit_at WHERE at < ? LIMIT ?)',
    ),
    // One statement per counter hit, atomic on its own: a counter expired at @now starts over.
    hitCounter: db.prepare<[{ key: string; now: number; expiresAt: number }]>(
      `INSERT INTO counters (key, count, until, expires_at) VALUES (@key, 1, 0, @expiresAt)
       ON CONFLICT (key) DO UPDATE SET
         count = CASE WHEN expires_at <= @now THEN 1 ELSE count + 1 END,
         until = CASE WHEN expires_at <= @now THEN 0 ELSE until END,
         expires_at = CASE WHEN expires_at <= @now THEN excluded.expires_at ELSE max(expires_at, excluded.expires_at) END
       RETURNING count, until, expires_at`,
    ),
    readCounter: db.prepare<[string, number]>('SELECT count, until, expires_at FROM counters WHERE key = ? AND expires_at > ?'),
    blockCounter: db.prepare<[{ key: string; until: number }]>(
      `INSERT INTO counters (key, count, until, expires_at) VALUES (@key, 0, @until, @until)
       ON CONFLICT (key) DO UPDATE SET until = max(until, excluded.until), expires_at = max(expires_at, excluded.until)`,
    ),
    clearCounter: db.prepare<[string]>('DELETE FROM counters WHERE key = ?'),
    recordNode: db.prepare<[{ id: string; currentKeyId: number; seenAt: number }]>(
      `INSERT INTO nodes (id, current_key_id, seen_at) VALUES (@id, @currentKeyId, @seenAt)
       ON CONFLICT (id) DO UPDATE SET current_key_id = excluded.current_key_id, seen_at = excluded.seen_at`,
    ),
    listNodes: db.prepare<[number]>('SELECT id, current_key_id, seen_at FROM nodes WHERE seen_at >= ? ORDER BY id'),
    forgetNode: db.prepare<[string]>('DELETE FROM nodes WHERE id = ?'),
    listFactors: db.prepare<[number]>('SELECT * FROM user_factors WHERE user_id = ? ORDER BY factor'),
    putFactor: db.prepare(
      `INSERT OR REPLACE INTO user_factors (user_id, factor, confirmed_at, must_enroll, last_step, created_at)
       VALUES (@userId, @factor, @confirmedAt, @mustEnroll, @lastStep, @createdAt)`,
    ),
    deleteFactor: db.prepare<[number, string]>('DELETE FROM user_factors WHERE user_id = ? AND factor = ?'),
    useFactorStep: db.prepare<[number, number, string, number]>(
      'UPDATE user_factors SET last_step = ? WHERE user_id = ? AND factor = ? AND last_step < ?',
    ),
    getSecret: db.prepare<[number, string]>('SELECT * FROM user_secrets WHERE user_id = ? AND kind = ?'),
    putSecret: db.prepare(
      `INSERT OR REPLACE INTO user_secrets (user_id, kind, key_id, sealed, updated_at) VALUES (@userId, @kind, @keyId, @sealed, @updatedAt)`,
    ),
    deleteSecret: db.prepare<[number, string]>('DELETE FROM user_secrets WHERE user_id = ? AND kind = ?'),
    secretsByKey: db.prepare<[number, number]>('SELECT * FROM user_secrets WHERE key_id = ? ORDER BY user_id, kind LIMIT ?'),
    resealSecret: db.prepare(
      `UPDATE user_secrets SET key_id = @keyId, sealed = @sealed, updated_at = @updatedAt
       WHERE user_id = @userId AND kind = @kind AND key_id = @fromKeyId`,
    ),
    putRecoveryPasscode: db.prepare(
      `INSERT OR REPLACE INTO recovery_passcodes (user_id, hash, mac, seen_ip, reported_ip, created_at, expires_at, attempts, key_id)
       VALUES (@userId, @hash, @mac, @seenIp, @reportedIp, @createdAt, @expiresAt, @attempts, @keyId)`,
    ),
    getRecoveryPasscode: db.prepare<[number]>('SELECT * FROM recovery_passcodes WHERE user_id = ?'),
    deleteRecoveryPasscode: db.prepare<[number]>('DELETE FROM recovery_passcodes WHERE user_id = ?'),
    setRecoveryAttempts: db.prepare<[number, number]>('UPDATE recovery_passcodes SET attempts = ? WHERE user_id = ?'),
    deleteRecoveryCodes: db.prepare<[number]>('DELETE FROM recovery_codes WHERE user_id = ?'),
    insertRecoveryCode: db.prepare<[number, Buffer, number]>('INSERT OR IGNORE INTO recovery_codes (user_id, hash, created_at) VALUES (?, ?, ?)'),
    useRecoveryCode: db.prepare<[number, Buffer]>('DELETE FROM recovery_codes WHERE user_id = ? AND hash = ?'),
    countRecoveryCodes: db.prepare<[number]>('SELECT count(*) FROM recovery_codes WHERE user_id = ?').pluck(),
    listDevices: db.prepare<[number]>(`SELECT ${DEVICE_COLS} FROM devices WHERE user_id = ? ORDER BY mac`),
    getDevice: db.prepare<[number, string]>(`SELECT ${DEVICE_COLS} FROM devices WHERE user_id = ? AND mac = ?`),
    // A login's device: inserted (new), or first used (registered, never seen: new), or refreshed.
    insertSeenDevice: db.prepare(
      `INSERT INTO devices (user_id, mac, name, first_seen_at, last_seen_at, last_ip) VALUES (@userId, @mac, @name, @at, @at, @ip)
       ON CONFLICT (user_id, mac) DO NOTHING`,
    ),
    firstUseDevice: db.prepare(
      `UPDATE devices SET first_seen_at = @at, last_seen_at = @at, last_ip = @ip, name = coalesce(name, @name)
       WHERE user_id = @userId AND mac = @mac AND first_seen_at IS NULL`,
    ),
    seenDevice: db.prepare(
      `UPDATE devices SET last_seen_at = max(coalesce(last_seen_at, 0), @at), last_ip = @ip, name = coalesce(name, @name) WHERE user_id = @userId AND mac = @mac`,
    ),
    insertSeenAddress: db.prepare(
      `INSERT INTO device_addresses (user_id, addr_group, first_seen_at, last_seen_at) VALUES (@userId, @addressGroup, @at, @at)
       ON CONFLICT (user_id, addr_group) DO NOTHING`,
    ),
    seenAddress: db.prepare(
      'UPDATE device_addresses SET last_seen_at = max(last_seen_at, @at) WHERE user_id = @userId AND addr_group = @addressGroup',
    ),
    registerDevice: db.prepare(
      `INSERT INTO devices (user_id, mac, name, registered_at, registered_by) VALUES (@userId, @mac, @name, @at, @by)
       ON CONFLICT (user_id, mac) DO UPDATE SET name = coalesce(excluded.name, devices.name), registered_at = excluded.registered_at,
         registered_by = excluded.registered_by`,
    ),
    renameDevice: db.prepare<[string | null, number, string]>('UPDATE devices SET name = ? WHERE user_id = ? AND mac = ?'),
    deleteDevice: db.prepare<[number, string]>('DELETE FROM devices WHERE user_id = ? AND mac = ?'),
    ping: db.prepare('SELECT 1').pluck(),
    // Housekeeping. INDEXED BY makes preparing fail rather than a batch silently scanning the table:
    // without statistics the planner could pick the other range (e.g. absolute_expires_at > ?).
    deleteExpiredPasscodes: db.prepare<[number, number]>(
      'DELETE FROM passcodes WHERE user_id IN (SELECT user_id FROM passcodes INDEXED BY passcodes_expires WHERE expires_at <= ? LIMIT ?)',
    ),
    revokedBefore: db
      .prepare<[number, number]>('SELECT id FROM sessions INDEXED BY sessions_revoked WHERE revoked_at <= ? LIMIT ?')
      .pluck(),
    pastAbsolute: db
      .prepare<[number, number, number]>(
        `SELECT id FROM sessions INDEXED BY sessions_open_absolute
         WHERE revoked_at IS NULL AND absolute_expires_at <= ? AND expires_at <= ? LIMIT ?`,
      )
      .pluck(),
    idleBefore: db
      .prepare<[number, number, number, number]>(
        `SELECT id FROM sessions INDEXED BY sessions_open_last_seen
         WHERE revoked_at IS NULL AND last_seen_at <= ? AND expires_at <= ? AND absolute_expires_at > ? LIMIT ?`,
      )
      .pluck(),
    deleteRetiredOf: db.prepare<[number, number]>(
      'DELETE FROM retired_tokens WHERE master IN (SELECT master FROM retired_tokens WHERE session_id = ? LIMIT ?)',
    ),
    deleteSession: db.prepare<[number]>('DELETE FROM sessions WHERE id = ?'),
    deleteExpiredCounters: db.prepare<[number, number]>(
      'DELETE FROM counters WHERE key IN (SELECT key FROM counters INDEXED BY counters_expires WHERE expires_at <= ? LIMIT ?)',
    ),
  };

  // What must commit together, as better-sqlite3 transactions: on the Store each is its own
  // transaction; inside an open one (a Tx) it becomes a savepoint, so it still applies whole or not.
  const rotate = db.transaction((r: Parameters<StoreOps['rotateSession']>[0]): boolean => {
    if (st.rotate.run(r).changes !== 1) return false;
    st.insertRetired.run(r);
    return true;
  });
  const revokeByKey = db.transaction((keyId: number, now: number, reason: string) => ({
    sessions: st.revokeByKey.run(now, reason, keyId).changes,
    passcodes: st.deletePasscodesByKey.run(keyId).changes,
  }));
  const appendAudit = db.transaction((events: readonly AuditEvent[]) => {
    for (const e of events) {
      st.insertAudit.run({
        at: e.at,
        action: e.action,
        outcome: e.outcome,
        userId: e.userId ?? null,
        email: e.email ?? null,
        actor: e.actor ?? null,
        ip: e.ip ?? null,
        mac: e.mac ?? null,
        sessionId: e.sessionId ?? null,
        detail: e.detail ? JSON.stringify(e.detail) : null,
      });
    }
  });
  const hitCounters = db.transaction((keys: readonly string[], now: number, expiresAt: number) =>
    keys.map((key) => toCounter(st.hitCounter.get({ key, now, expiresAt }) as CounterRow)),
  );
  const putRecoveryCodes = db.transaction((userId: number, hashes: readonly Buffer[], now: number) => {
    st.deleteRecoveryCodes.run(userId);
    for (const h of hashes) st.insertRecoveryCode.run(userId, h, now);
  });
  const recordDeviceLogin = db.transaction((login: DeviceLogin): DeviceNovelty => {
    const newDevice = st.insertSeenDevice.run(login).changes === 1 || st.firstUseDevice.run(login).changes === 1;
    if (!newDevice) st.seenDevice.run(login);
    const newAddress = st.insertSeenAddress.run(login).changes === 1;
    if (!newAddress) st.seenAddress.run(login);
    return { newDevice, newAddress };
  });
  const clearCounters = db.transaction((keys: readonly string[]) => {
    for (const key of keys) st.clearCounter.run(key);
  });
  // IMMEDIATE: take the write lock first, so contention shows as busy before anything is read.
  const deleteExpired = db.transaction((now: number, policy: ExpiryPolicy): ExpiredCounts => {
    const limit = policy.batch;
    const passcodes = st.deleteExpiredPasscodes.run(now, limit).changes;
    // Dead sessions, each kind through its own index; the three kinds are disjoint. The token
    // must have expired too: until then it still answers authorized, idle or not [P-4.5].
    const ids = st.revokedBefore.all(now - policy.keepRevokedMs, limit) as number[];
    if (ids.length < limit) ids.push(...(st.pastAbsolute.all(now, now, limit - ids.length) as number[]));
    if (ids.length < limit) ids.push(...(st.idleBefore.all(now - policy.idleMs, now, now, limit - ids.length) as number[]));
    // Retired tokens are deleted here rather than by the cascade, which would be unbounded (one
    // per renewal) and uncounted. A session goes only once none of its retired tokens is left.
    let retiredTokens = 0;
    let sessions = 0;
    for (const id of ids) {
      const budget = limit - retiredTokens;
      const n = budget > 0 ? st.deleteRetiredOf.run(id, budget).changes : 0;
      retiredTokens += n;
      if (n === budget) break; // it may have more: the next call finishes it
      st.deleteSession.run(id);
      sessions++;
    }
    const keepAudit = policy.keepAuditMs ?? 0;
    const auditRows = keepAudit > 0 ? st.deleteOldAudit.run(now - keepAudit, limit).changes : 0;
    const counters = st.deleteExpiredCounters.run(now, limit).changes;
    return { passcodes, sessions, retiredTokens, auditRows, counters };
  }).immediate;

  // Audit queries combine optional filters: one statement per combination, prepared on first use.
  const auditQueries = new Map<string, Database.Statement>();
  const queryAudit = (q: AuditQuery): AuditRecord[] => {
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: q.limit };
    if (q.email !== undefined) {
      where.push('email = @email');
      params.email = q.email;
    }
    if (q.action !== undefined) {
      // A prefix becomes a range on the index (GLOB would too, but only under BINARY collation
      // and with no special characters in the prefix; the range has no such conditions).
      if (q.action.endsWith('*')) {
        where.push('action >= @actionFrom AND action < @actionTo');
        const prefix = q.action.slice(0, -1);
        params.actionFrom = prefix;
        params.actionTo = prefix + '\uffff';
      } else {
        where.push('action = @action');
        params.action = q.action;
      }
    }
    if (q.actor !== undefined) {
      where.push('actor = @actor');
      params.actor = q.actor;
    }
    if (q.outcome !== undefined) {
      where.push('outcome = @outcome');
      params.outcome = q.outcome;
    }
    if (q.since !== undefined) {
      where.push('at >= @since');
      params.since = q.since;
    }
    if (q.until !== undefined) {
      where.push('at < @until');
      params.until = q.until;
    }
    if (q.beforeId !== undefined) {
      where.push('id < @beforeId');
      params.beforeId = q.beforeId;
    }
    const sql = `SELECT * FROM audit${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT @limit`;
    let stmt = auditQueries.get(sql);
    if (!stmt) auditQueries.set(sql, (stmt = db.prepare(sql)));
    return (stmt.all(params) as AuditRow[]).map(toAudit);
  };

  const ops: SyncOps = {
    createUser(_changes, user) {
      try {
        return toUser(st.insertUser.get(user.email, user.phone, user.role, user.passwordHash, user.createdAt) as UserRow);
      } catch (err) {
        // users.email is the table's only UNIQUE column (the id is its PRIMARY KEY, a different code).
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new DuplicateUserError(`a user with email ${user.email} already exists`);
        }
        throw err;
      }
    },
    findUserByEmail(_changes, email) {
      const row = st.userByEmail.get(email) as UserRow | undefined;
      return row && toUser(row);
    },
    findUserById(_changes, id) {
      const row = st.userById.get(id) as UserRow | undefined;
      return row && toUser(row);
    },
    setPasswordHash(changes, userId, passwordHash, ifCurrent) {
      const result =
        ifCurrent === undefined
          ? st.setPasswordHash.run(passwordHash, userId)
          : st.replacePasswordHash.run(passwordHash, userId, ifCurrent);
      const changed = result.changes === 1;
      if (changed) changes.push({ kind: 'user', id: userId });
      return changed;
    },
    listUsers() {
      return (st.listUsers.all() as UserRow[]).map(toUser);
    },
    setUserDisabled(changes, userId, disabled) {
      const changed = st.setDisabled.run(disabled ? 1 : 0, userId).changes === 1;
      if (changed) changes.push({ kind: 'user', id: userId });
      return changed;
    },
    setUserRole(changes, userId, role) {
      const changed = st.setRole.run(role, userId).changes === 1;
      if (changed) changes.push({ kind: 'user', id: userId });
      return changed;
    },
    deleteUser(changes, userId) {
      const changed = st.deleteUser.run(userId).changes === 1;
      if (changed) changes.push({ kind: 'user', id: userId });
      return changed;
    },
    // BEGIN IMMEDIATE took the database's only write lock: every writing transaction is already
    // serialized with this one, on every connection.
    lockUser() {},
    revokeUserSessions(changes, userId, now, reason) {
      const n = st.revokeUserSessions.run(now, reason, userId).changes;
      if (n > 0) changes.push({ kind: 'user', id: userId });
      return n;
    },

    putPasscode(_changes, p) {
      st.putPasscode.run(p);
    },
    // Inside a transaction the write lock (BEGIN IMMEDIATE) is the row lock: nobody else can change it.
    getPasscode(_changes, userId) {
      const row = st.getPasscode.get(userId) as PasscodeRow | undefined;
      return row && toPasscode(row);
    },
    deletePasscode(_changes, userId) {
      st.deletePasscode.run(userId);
    },
    setPasscodeAttempts(_changes, userId, attempts) {
      st.setAttempts.run(attempts, userId);
    },
    countPendingPasscodes(_changes, now) {
      return st.pendingPasscodes.get(now) as number;
    },

    // A new session needs no announcement: no cache can hold a session that did not exist.
    createSession(_changes, s) {
      return Number(st.insertSession.run({ ...s, device: s.device ?? null, scope: s.scope ?? 'full' }).lastInsertRowid);
    },
    findSessionByMaster(_changes, master) {
      const row = st.sessionByMaster.get(master) as SessionRow | undefined;
      return row && toSession(row);
    },
    findSessionById(_changes, id) {
      const row = st.sessionById.get(id) as SessionRow | undefined;
      return row && toSession(row);
    },
    findRetiredToken(_changes, master) {
      const row = st.retired.get(master) as RetiredRow | undefined;
      return row && toRetired(row);
    },
    rotateSession(changes, rotation) {
      const rotated = rotate(rotation);
      if (rotated) changes.push({ kind: 'session', id: rotation.sessionId });
      return rotated;
    },
    touchSession(_changes, id, now) {
      try {
        st.touch.run(now, id);
      } catch (err) {
        // Best effort: a lock held elsewhere must not fail the token check; the next check retries.
        if (isBusy(err)) return false;
        throw err;
      }
      return true;
    },
    revokeSession(changes, id, now, reason) {
      const revoked = st.revoke.run(now, reason, id).changes === 1;
      if (revoked) changes.push({ kind: 'session', id });
      return revoked;
    },
    listOpenSessions(_changes, userId) {
      return (st.openSessionsOf.all(userId) as SessionRow[]).map(toSession);
    },
    listAllOpenSessions() {
      return (st.allOpenSessions.all() as SessionRow[]).map(toSession);
    },
    countLiveSessions(_changes, bounds) {
      return st.countLive.get(liveParams(bounds)) as number;
    },
    sessionCounts(_changes, bounds) {
      return toSessionCounts(st.sessionCounts.all(liveParams(bounds)) as Array<{ email: string; active: number; open: number }>);
    },

    countSessionsByKey(_changes, now) {
      const rows = st.countByKey.all(now) as Array<{ key_id: number; n: number }>;
      return new Map(rows.map((r) => [r.key_id, r.n]));
    },
    revokeByKey(changes, keyId, now, reason) {
      const result = revokeByKey(keyId, now, reason);
      // Which sessions were revoked is not returned by the UPDATE; this is rare enough to say `all`.
      if (result.sessions > 0) changes.push({ kind: 'all' });
      return result;
    },

    appendAudit(_changes, events) {
      if (events.length > 0) appendAudit(events);
    },
    queryAudit(_changes, q) {
      return queryAudit(q);
    },

    hitCounters(_changes, keys, now, expiresAt) {
      return hitCounters(keys, now, expiresAt);
    },
    // Counters are independent: one statement each, no common snapshot needed.
    readCounters(_changes, keys, now) {
      return keys.map((key) => {
        const row = st.readCounter.get(key, now) as CounterRow | undefined;
        return row && toCounter(row);
      });
    },
    blockCounter(_changes, key, until) {
      st.blockCounter.run({ key, until });
    },
    clearCounters(_changes, keys) {
      clearCounters(keys);
    },

    recordNode(_changes, node) {
      st.recordNode.run({ id: node.id, currentKeyId: node.currentKeyId, seenAt: node.seenAt });
    },
    listNodes(_changes, since) {
      return (st.listNodes.all(since) as Array<{ id: string; current_key_id: number; seen_at: number }>).map((r) => ({
        id: r.id,
        currentKeyId: r.current_key_id,
        seenAt: r.seen_at,
      }));
    },
    forgetNode(_changes, id) {
      st.forgetNode.run(id);
    },

    listFactors(_changes, userId) {
      return (st.listFactors.all(userId) as FactorRow[]).map(toFactor);
    },
    putFactor(_changes, f) {
      st.putFactor.run({ ...f, mustEnroll: f.mustEnroll ? 1 : 0 });
    },
    deleteFactor(_changes, userId, factor) {
      return st.deleteFactor.run(userId, factor).changes === 1;
    },
    useFactorStep(_changes, userId, factor, step) {
      return st.useFactorStep.run(step, userId, factor, step).changes === 1;
    },
    getSecret(_changes, userId, kind) {
      const row = st.getSecret.get(userId, kind) as SecretRow | undefined;
      return row && toSecret(row);
    },
    putSecret(_changes, r) {
      st.putSecret.run({ userId: r.userId, kind: r.kind, keyId: r.keyId, sealed: r.sealed, updatedAt: r.updatedAt });
    },
    deleteSecret(_changes, userId, kind) {
      return st.deleteSecret.run(userId, kind).changes === 1;
    },
    listSecretsByKey(_changes, keyId, limit) {
      return (st.secretsByKey.all(keyId, limit) as SecretRow[]).map(toSecret);
    },
    resealSecret(_changes, userId, kind, fromKeyId, r) {
      return st.resealSecret.run({ userId, kind, fromKeyId, keyId: r.keyId, sealed: r.sealed, updatedAt: r.updatedAt }).changes === 1;
    },
    putRecoveryPasscode(_changes, p) {
      st.putRecoveryPasscode.run(p);
    },
    getRecoveryPasscode(_changes, userId) {
      const row = st.getRecoveryPasscode.get(userId) as PasscodeRow | undefined;
      return row && toPasscode(row);
    },
    deleteRecoveryPasscode(_changes, userId) {
      st.deleteRecoveryPasscode.run(userId);
    },
    setRecoveryPasscodeAttempts(_changes, userId, attempts) {
      st.setRecoveryAttempts.run(attempts, userId);
    },
    putRecoveryCodes(_changes, userId, hashes, now) {
      putRecoveryCodes(userId, hashes, now);
    },
    useRecoveryCode(_changes, userId, hash) {
      return st.useRecoveryCode.run(userId, hash).changes === 1;
    },
    countRecoveryCodes(_changes, userId) {
      return st.countRecoveryCodes.get(userId) as number;
    },

    listDevices(_changes, userId) {
      return (st.listDevices.all(userId) as DeviceRow[]).map(toDevice);
    },
    getDevice(_changes, userId, mac) {
      const row = st.getDevice.get(userId, mac) as DeviceRow | undefined;
      return row && toDevice(row);
    },
    recordDeviceLogin(_changes, login) {
      return recordDeviceLogin(login);
    },
    registerDevice(_changes, userId, mac, name, at, by) {
      st.registerDevice.run({ userId, mac, name, at, by });
      return toDevice(st.getDevice.get(userId, mac) as DeviceRow);
    },
    renameDevice(_changes, userId, mac, name) {
      return st.renameDevice.run(name, userId, mac).changes === 1;
    },
    deleteDevice(_changes, userId, mac) {
      return st.deleteDevice.run(userId, mac).changes === 1;
    },
  };

  // The change feed.
  const listeners = new Set<(change: StoreChange) => void>();
  const announce = (changes: readonly StoreChange[]): void => {
    for (const change of changes) {
      for (const listener of listeners) {
        try {
          listener(change);
        } catch (err) {
          // A listener's bug must not turn a committed write into an error, nor stop the others.
          log?.error({ err, change }, 'a store change listener threw');
        }
      }
    }
  };
  let seenVersion = st.dataVersion.get();

  const mutex = new Mutex();

  // A Store call: runs at once, on no transaction, and announces what it changed. Reused: the
  // work is synchronous, so one call's changes are taken out before any other call can add to it.
  const pending: Changes = [];
  const runNow: Runner = (op, args) => {
    try {
      const value = op(pending, ...args);
      if (pending.length > 0) announce(pending.splice(0));
      return Promise.resolve(value);
    } catch (err) {
      pending.length = 0;
      return Promise.reject(translate(err));
    }
  };
  const runOnStore: Runner = (op, args) => (mutex.held ? mutex.run(() => runNow(op, args)) : runNow(op, args));

  const runTransaction = async <T>(fn: (tx: Tx) => Promise<T>): Promise<T> => {
    try {
      st.begin.run();
    } catch (err) {
      throw translate(err);
    }
    const state = { open: true, changes: [] as Changes };
    const tx = bind(ops, (op, args) => {
      if (!state.open) {
        return Promise.reject(new Error('this transaction has ended (committed or rolled back): its tx handle cannot be used any more'));
      }
      try {
        return Promise.resolve(op(state.changes, ...args));
      } catch (err) {
        return Promise.reject(translate(err));
      }
    });
    let result: T;
    try {
      result = await fn(tx);
      state.open = false;
      st.commit.run();
    } catch (err) {
      state.open = false;
      // Some errors (a full disk, I/O) end the transaction themselves: roll back only what is open.
      if (db.inTransaction) {
        try {
          st.rollback.run();
        } catch (rollbackErr) {
          log?.error({ err: rollbackErr }, 'rollback failed');
        }
      }
      throw translate(err);
    }
    announce(state.changes);
    return result;
  };

  // Names of the `exclusive` tasks running in this process.
  const running = new Set<string>();

  // An in-memory database has no file another connection could open: it counts on the loop.
  const reader = file === ':memory:' ? undefined : new SqliteReader(file, COUNT_READS);
  const offLoop: Partial<StoreOps> = reader
    ? {
        countLiveSessions: async (b) => (await reader.query('countLive', 'get', liveParams(b))) as number,
        sessionCounts: async (b) =>
          toSessionCounts((await reader.query('sessionCounts', 'all', liveParams(b))) as Array<{ email: string; active: number; open: number }>),
        countPendingPasscodes: async (now) => (await reader.query('pendingPasscodes', 'get', [now])) as number,
        countSessionsByKey: async (now) =>
          new Map(((await reader.query('countByKey', 'all', [now])) as Array<{ key_id: number; n: number }>).map((r) => [r.key_id, r.n])),
      }
    : {};

  const store: Store = {
    backend: 'sqlite',
    // Own writes are announced directly and others' are polled by refresh(): nothing is missed.
    coherent: true,
    ...bind(ops, runOnStore),
    ...offLoop,

    transaction: (fn) => mutex.run(() => runTransaction(fn)),

    onChange(listener) {
      // Wrapped, so that one listener registered twice is two registrations, each removable.
      const entry = (change: StoreChange): void => listener(change);
      listeners.add(entry);
      return () => {
        listeners.delete(entry);
      };
    },
    refresh() {
      if (!db.open) return;
      let version: unknown;
      try {
        version = st.dataVersion.get();
      } catch (err) {
        // Cannot tell whether another process committed: assume it did.
        log?.warn({ err }, 'could not read PRAGMA data_version');
        announce([{ kind: 'all' }]);
        return;
      }
      if (version !== seenVersion) {
        seenVersion = version;
        announce([{ kind: 'all' }]);
      }
    },

    deleteExpired: (now, policy) =>
      runOnStore(
        (changes) => {
          // Without the fsync of synchronous=FULL (6–8 ms that hold the event loop, more than the
          // deletes themselves): a batch lost to a power cut is only deleted again by the next
          // pass, and WAL stays consistent either way. The next FULL commit syncs it anyway.
          st.syncNormal.run();
          let counts: ExpiredCounts;
          try {
            counts = deleteExpired(now, policy);
          } finally {
            st.syncFull.run();
          }
          // The ids are known, but housekeeping deletes only sessions no check can use; one `all`
          // per round is simpler for every backend than hundreds of announcements.
          if (counts.sessions > 0) changes.push({ kind: 'all' });
          return counts;
        },
        [],
      ) as Promise<ExpiredCounts>,

    // In-process only, and that is enough: a SQLite file is shared only by processes on one host
    // (the server, the CLI, workers), whose writes SQLite's single write lock already serializes.
    // Housekeeping is bounded batches in one short transaction each; two processes running it at
    // once delete nothing twice and leave nothing inconsistent, they only share the work.
    async exclusive(name, fn) {
      if (running.has(name)) return undefined;
      running.add(name);
      try {
        return await fn();
      } finally {
        running.delete(name);
      }
    },
    ping: () =>
      runOnStore(() => {
        if (!db.open) throw new Error('database is closed');
        st.ping.get();
      }, []) as Promise<void>,
    schemaVersion: () => runOnStore(() => st.userVersion.get() as number, []) as Promise<number>,

    // After any transaction under way (closing under it would end it half-done).
    close: async () => {
      await reader?.close();
      await runOnStore(() => {
        if (db.open) db.close();
      }, []);
    },
  };
  return store;
}
