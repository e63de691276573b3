import { closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Logger } from '../deps.js';
import { MIGRATIONS, type Migration } from './migrations.js';
import {
  DuplicateUserError,
  StoreBusyError,
  type AuditEvent,
  type AuditQuery,
  type AuditRecord,
  type NewSession,
  type NewUser,
  type Rotation,
  type SessionRecord,
  type Store,
  type UserRecord,
} from './store.js';

interface UserRow {
  id: number;
  email: string;
  phone: string;
  role: string;
  password_hash: string;
  disabled: number;
  created_at: number;
}

interface SessionRow {
  id: number;
  user_id: number;
  master: Buffer;
  mac: string;
  ip: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  absolute_expires_at: number;
  generation: number;
  revoked_at: number | null;
  revoke_reason: string | null;
  user_email: string;
  user_role: string;
  user_disabled: number;
  key_id: number;
  device: string | null;
}

const toUser = (r: UserRow): UserRecord => ({
  id: r.id,
  email: r.email,
  phone: r.phone,
  role: r.role,
  passwordHash: r.password_hash,
  disabled: r.disabled !== 0,
  createdAt: r.created_at,
});

const toSession = (r: SessionRow): SessionRecord => ({
  id: r.id,
  userId: r.user_id,
  master: r.master,
  mac: r.mac,
  ip: r.ip,
  createdAt: r.created_at,
  lastSeenAt: r.last_seen_at,
  expiresAt: r.expires_at,
  absoluteExpiresAt: r.absolute_expires_at,
  generation: r.generation,
  revokedAt: r.revoked_at,
  revokeReason: r.revoke_reason,
  userEmail: r.user_email,
  userRole: r.user_role,
  userDisabled: r.user_disabled !== 0,
  keyId: r.key_id,
  device: r.device,
});

interface AuditRow {
  id: number;
  at: number;
  action: string;
  outcome: AuditRecord['outcome'];
  user_id: number | null;
  email: string | null;
  actor: string | null;
  ip: string | null;
  mac: string | null;
  session_id: number | null;
  detail: string | null;
}

const toAudit = (r: AuditRow): AuditRecord => ({
  id: r.id,
  at: r.at,
  action: r.action,
  outcome: r.outcome,
  userId: r.user_id,
  email: r.email,
  actor: r.actor,
  ip: r.ip,
  mac: r.mac,
  sessionId: r.session_id,
  detail: r.detail === null ? null : (JSON.parse(r.detail) as AuditRecord['detail']),
});

const isBusy = (err: unknown): boolean => (err as { code?: unknown }).code === 'SQLITE_BUSY';

/** Wraps every method so that SQLite's lock contention leaves the store as a StoreBusyError. */
function reportBusy(store: Store): Store {
  const wrapped = {} as Record<string, unknown>;
  for (const [name, method] of Object.entries(store) as Array<[string, (...args: unknown[]) => unknown]>) {
    wrapped[name] = (...args: unknown[]) => {
      try {
        return method(...args);
      } catch (err) {
        throw isBusy(err) ? new StoreBusyError((err as Error).message) : err;
      }
    };
  }
  return wrapped as unknown as Store;
}

// Bounds the session cache's memory; past it the cache simply starts over.
const SESSION_CACHE_MAX = 100_000;

/**
 * Sessions by master token, in memory. A token check is otherwise one SQLite statement, whose
 * fixed cost (locking the WAL index) dominates the whole check. `PRAGMA data_version` changes when
 * another connection (another process: the CLI, a cluster worker) commits, so one cheap pragma per
 * incoming read tells whether the cache may still be trusted; this connection's own writes update
 * the cache directly. Every statement here that changes sessions or users must keep it right.
 */
class SessionCache {
  readonly #byKey = new Map<string, SessionRecord>();
  readonly #keyById = new Map<number, string>();

  get(key: string): SessionRecord | undefined {
    return this.#byKey.get(key);
  }

  set(key: string, record: SessionRecord): void {
    if (this.#byKey.size >= SESSION_CACHE_MAX) this.clear();
    this.#byKey.set(key, record);
    this.#keyById.set(record.id, key);
  }

  update(id: number, change: (r: SessionRecord) => SessionRecord): void {
    const key = this.#keyById.get(id);
    const record = key === undefined ? undefined : this.#byKey.get(key);
    if (key !== undefined && record) this.#byKey.set(key, change(record));
  }

  delete(id: number): void {
    const key = this.#keyById.get(id);
    if (key === undefined) return;
    this.#byKey.delete(key);
    this.#keyById.delete(id);
  }

  clear(): void {
    this.#byKey.clear();
    this.#keyById.clear();
  }
}

const SESSION_SELECT = `
  SELECT s.*, u.email AS user_email, u.role AS user_role, u.disabled AS user_disabled
  FROM sessions s JOIN users u ON u.id = s.user_id`;

/** Applies every migration newer than the database's `user_version`, each in its own transaction. */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  return db.pragma('user_version', { simple: true }) as number;
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
  // SQLite waits for a lock synchronously, blocking the event loop: keep the wait short. Writers
  // are brief (the CLI, another worker); a write that still finds the lock answers E_BUSY.
  db.pragma('busy_timeout = 100');
  const version = migrate(db);
  log?.debug({ file, schemaVersion: version }, 'database open');

  const st = {
    insertUser: db.prepare<[string, string, string, string, number]>(
      'INSERT INTO users (email, phone, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *',
    ),
    userByEmail: db.prepare<[string]>('SELECT * FROM users WHERE email = ?'),
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
      `INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at, key_id, device)
       VALUES (@userId, @master, @mac, @ip, @createdAt, @createdAt, @expiresAt, @absoluteExpiresAt, @keyId, @device)`,
    ),
    sessionByMaster: db.prepare<[Buffer]>(`${SESSION_SELECT} WHERE s.master = ?`),
    sessionById: db.prepare<[number]>(`${SESSION_SELECT} WHERE s.id = ?`),
    openSessionsOf: db.prepare<[number]>(`${SESSION_SELECT} WHERE s.user_id = ? AND s.revoked_at IS NULL ORDER BY s.created_at, s.id`),
    pendingPasscodes: db.prepare<[number]>('SELECT count(*) FROM passcodes WHERE expires_at > ?').pluck(),
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
    countByKey: db.prepare<[number]>(
      'SELECT key_id, count(*) AS n FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at > ? GROUP BY key_id',
    ),
    revokeByKey: db.prepare<[number, string, number]>(
      'UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE key_id = ? AND revoked_at IS NULL',
    ),
    deletePasscodesByKey: db.prepare<[number]>('DELETE FROM passcodes WHERE key_id = ?'),
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
    // isActiveSession in SQL: a current token, or one still renewable (inside both limits).
    countActive: db
      .prepare<[{ now: number; activeSince: number }]>(
        `SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.revoked_at IS NULL AND u.disabled = 0
           AND (s.expires_at > @now OR (s.absolute_expires_at > @now AND s.last_seen_at > @activeSince))`,
      )
      .pluck(),
    insertAudit: db.prepare(
      `INSERT INTO audit (at, action, outcome, user_id, email, actor, ip, mac, session_id, detail)
       VALUES (@at, @action, @outcome, @userId, @email, @actor, @ip, @mac, @sessionId, @detail)`,
    ),
    deleteOldAudit: db.prepare<[number, number]>(
      'DELETE FROM audit WHERE id IN (SELECT id FROM audit INDEXED BY audit_at WHERE at < ? LIMIT ?)',
    ),
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
  };

  // Audit queries combine optional filters: one statement per combination, prepared on first use.
  const auditQueries = new Map<string, Database.Statement>();
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

  const cache = new SessionCache();
  let seenVersion: unknown = st.dataVersion.get();
  let batchDepth = 0;
  let batchValidated = false;
  const revalidate = (): void => {
    const version = st.dataVersion.get();
    if (version !== seenVersion) {
      cache.clear();
      seenVersion = version;
    }
  };

  const store: Store = {
    transaction: (fn) => db.transaction(fn)(),

    readBatch(fn) {
      if (batchDepth === 0) {
        try {
          revalidate();
          batchValidated = true;
        } catch {
          // Could not tell whether the cache is current: validate per lookup, inside each request,
          // where a failure becomes that request's error response.
          cache.clear();
          batchValidated = false;
        }
      }
      batchDepth++;
      try {
        return fn();
      } finally {
        batchDepth--;
      }
    },

    createUser(user: NewUser): UserRecord {
      try {
        return toUser(st.insertUser.get(user.email, user.phone, user.role, user.passwordHash, user.createdAt) as UserRow);
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
          throw new DuplicateUserError(`a user with email ${user.email} already exists`);
        }
        throw err;
      }
    },
    findUserByEmail(email) {
      const row = st.userByEmail.get(email) as UserRow | undefined;
      return row && toUser(row);
    },
    setPasswordHash(userId, passwordHash, ifCurrent) {
      // The session cache holds no password hash (only the owner's email, role and disabled flag),
      // so this write leaves it as it is.
      const result =
        ifCurrent === undefined
          ? st.setPasswordHash.run(passwordHash, userId)
          : st.replacePasswordHash.run(passwordHash, userId, ifCurrent);
      return result.changes === 1;
    },

    // Cached sessions carry their owner's role and disabled flag: every user write below starts the
    // cache over, so a check never answers from a stale copy (these writes are rare admin actions).
    listUsers() {
      return (st.listUsers.all() as UserRow[]).map(toUser);
    },
    setUserDisabled(userId, disabled) {
      const changed = st.setDisabled.run(disabled ? 1 : 0, userId).changes === 1;
      cache.clear();
      return changed;
    },
    setUserRole(userId, role) {
      const changed = st.setRole.run(role, userId).changes === 1;
      cache.clear();
      return changed;
    },
    deleteUser(userId) {
      const changed = st.deleteUser.run(userId).changes === 1;
      cache.clear();
      return changed;
    },
    revokeUserSessions(userId, now, reason) {
      const n = st.revokeUserSessions.run(now, reason, userId).changes;
      cache.clear();
      return n;
    },

    putPasscode(p) {
      st.putPasscode.run(p);
    },
    getPasscode(userId) {
      const r = st.getPasscode.get(userId) as
        | { user_id: number; hash: Buffer; mac: string; seen_ip: string; reported_ip: string | null; created_at: number; expires_at: number; attempts: number; key_id: number }
        | undefined;
      return (
        r && {
          userId: r.user_id,
          hash: r.hash,
          mac: r.mac,
          seenIp: r.seen_ip,
          reportedIp: r.reported_ip,
          createdAt: r.created_at,
          expiresAt: r.expires_at,
          attempts: r.attempts,
          keyId: r.key_id,
        }
      );
    },
    deletePasscode(userId) {
      st.deletePasscode.run(userId);
    },
    setPasscodeAttempts(userId, attempts) {
      st.setAttempts.run(attempts, userId);
    },

    createSession(s: NewSession) {
      return Number(st.insertSession.run({ ...s, device: s.device ?? null }).lastInsertRowid);
    },
    findSessionByMaster(master) {
      if (batchDepth === 0 || !batchValidated) revalidate();
      const key = master.toString('latin1');
      const cached = cache.get(key);
      if (cached) return cached;
      const row = st.sessionByMaster.get(master) as SessionRow | undefined;
      if (!row) return undefined;
      const session = toSession(row);
      cache.set(key, session);
      return session;
    },
    findSessionById(id) {
      const row = st.sessionById.get(id) as SessionRow | undefined;
      return row && toSession(row);
    },
    findRetiredToken(master) {
      const r = st.retired.get(master) as
        | { master: Buffer; session_id: number; generation: number; retired_at: number; grace_until: number; nonce: Buffer; key_id: number; rotate_key_id: number }
        | undefined;
      return (
        r && {
          master: r.master,
          sessionId: r.session_id,
          generation: r.generation,
          retiredAt: r.retired_at,
          graceUntil: r.grace_until,
          nonce: r.nonce,
          keyId: r.key_id,
          rotateKeyId: r.rotate_key_id,
        }
      );
    },
    rotateSession(rotation: Rotation) {
      cache.delete(rotation.sessionId);
      return db.transaction(() => {
        if (st.rotate.run(rotation).changes !== 1) return false;
        st.insertRetired.run(rotation);
        return true;
      })();
    },
    touchSession(id, now) {
      try {
        st.touch.run(now, id);
      } catch (err) {
        // Best effort: a lock held elsewhere must not fail the token check; the next check retries.
        if (isBusy(err)) return false;
        throw err;
      }
      cache.update(id, (r) => ({ ...r, lastSeenAt: now }));
      return true;
    },
    revokeSession(id, now, reason) {
      st.revoke.run(now, reason, id);
      cache.delete(id);
    },
    listOpenSessions(userId) {
      return (st.openSessionsOf.all(userId) as SessionRow[]).map(toSession);
    },
    listAllOpenSessions() {
      return (st.allOpenSessions.all() as SessionRow[]).map(toSession);
    },
    countPendingPasscodes(now) {
      return st.pendingPasscodes.get(now) as number;
    },

    countSessionsByKey(now) {
      const rows = st.countByKey.all(now) as Array<{ key_id: number; n: number }>;
      return new Map(rows.map((r) => [r.key_id, r.n]));
    },
    revokeByKey(keyId, now, reason) {
      const result = db.transaction(() => ({
        sessions: st.revokeByKey.run(now, reason, keyId).changes,
        passcodes: st.deletePasscodesByKey.run(keyId).changes,
      }))();
      // Any cached session may be one of those just revoked; this is rare enough to start over.
      cache.clear();
      return result;
    },

    countActiveSessions(now, idleMs) {
      return st.countActive.get({ now, activeSince: now - idleMs }) as number;
    },

    inTransaction: () => db.inTransaction,
    appendAudit(events) {
      if (events.length > 0) appendAudit(events);
    },
    queryAudit(q: AuditQuery): AuditRecord[] {
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
    },
    deleteExpired(now, policy) {
      const limit = policy.batch;
      const gone: number[] = [];
      // IMMEDIATE: take the write lock first, so contention shows as busy before anything is read.
      const counts = db.transaction(() => {
        const passcodes = st.deleteExpiredPasscodes.run(now, limit).changes;
        // Dead sessions, each kind through its own index; the three kinds are disjoint. The token
        // must have expired too: until then it still answers authorized, idle or not [P-4.5].
        const ids = st.revokedBefore.all(now - policy.keepRevokedMs, limit) as number[];
        if (ids.length < limit) ids.push(...(st.pastAbsolute.all(now, now, limit - ids.length) as number[]));
        if (ids.length < limit) ids.push(...(st.idleBefore.all(now - policy.idleMs, now, now, limit - ids.length) as number[]));
        // Retired tokens are deleted here rather than by the cascade, which would be unbounded (one
        // per renewal) and uncounted. A session goes only once none of its retired tokens is left.
        let retiredTokens = 0;
        for (const id of ids) {
          const budget = limit - retiredTokens;
          const n = budget > 0 ? st.deleteRetiredOf.run(id, budget).changes : 0;
          retiredTokens += n;
          if (n === budget) break; // it may have more: the next call finishes it
          st.deleteSession.run(id);
          gone.push(id);
        }
        const keepAudit = policy.keepAuditMs ?? 0;
        const auditRows = keepAudit > 0 ? st.deleteOldAudit.run(now - keepAudit, limit).changes : 0;
        return { passcodes, sessions: gone.length, retiredTokens, auditRows };
      }).immediate();
      // This connection's own deletes do not change data_version: drop them from the cache here.
      for (const id of gone) cache.delete(id);
      return counts;
    },
    ping() {
      if (!db.open) throw new Error('database is closed');
      st.ping.get();
    },

    close() {
      if (db.open) db.close();
    },
  };
  return reportBusy(store);
}

