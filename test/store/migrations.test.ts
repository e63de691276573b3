import Database from 'better-sqlite3';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { buildApp } from '../../src/app.js';
import { keyFileName, rotateKey } from '../../src/keys/key-ring.js';
import { deriveKeys, loadOrCreateServerKey, readServerKeyFile } from '../../src/keys/keys.js';
import { hashPasscode } from '../../src/primitives/passcodes.js';
import { masterToken, newBaseToken, rotatedToken } from '../../src/primitives/tokens.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { MIGRATIONS, type Migration } from '../../src/store/migrations.js';
import { migrate, openSqliteStore } from '../../src/store/sqlite-store.js';
import { DuplicateUserError, type StoreChange } from '../../src/store/store.js';

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-db-')), 'hellwall.db');

t.test('migrations run once and record the schema version', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.equal(await store.schemaVersion(), MIGRATIONS.at(-1)!.version);
  await store.close();
  const db = new Database(file);
  t.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.at(-1)!.version);
  t.equal(migrate(db), MIGRATIONS.at(-1)!.version, 'running again changes nothing');
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});

t.test('the database file is private', async (t) => {
  const file = tmp();
  await openSqliteStore(file).close();
  t.equal(statSync(file).mode & 0o077, 0, 'no group or other access');
});

t.test('data survives closing and reopening', async (t) => {
  const file = tmp();
  let store = openSqliteStore(file);
  const user = await store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const id = await store.createSession({ userId: user.id, master: Buffer.alloc(32, 7), mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  await store.close();
  store = openSqliteStore(file);
  t.equal((await store.findUserByEmail('a@b.c'))?.id, user.id);
  t.equal((await store.findUserById(user.id))?.email, 'a@b.c');
  t.equal((await store.findSessionByMaster(Buffer.alloc(32, 7)))?.id, id);
  t.equal((await store.findSessionByMaster(Buffer.alloc(32, 7)))?.userEmail, 'a@b.c', 'the owner is joined in');
  await store.close();
});

t.test('a duplicate email is a DuplicateUserError', async (t) => {
  const store = openSqliteStore(tmp());
  const u = { email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 };
  await store.createUser(u);
  await t.rejects(store.createUser(u), DuplicateUserError);
  await store.close();
});

t.test('a rotation applies only to the generation it was computed from', async (t) => {
  const store = openSqliteStore(tmp());
  const user = await store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const old = Buffer.alloc(32, 1);
  const sessionId = await store.createSession({ userId: user.id, master: old, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  const rotation = { sessionId, oldMaster: old, newMaster: Buffer.alloc(32, 2), generation: 0, now: 5, expiresAt: 9, graceUntil: 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 };
  t.ok(await store.rotateSession(rotation));
  t.notOk(await store.rotateSession({ ...rotation, newMaster: Buffer.alloc(32, 3) }), 'a second rotation from the same state loses');
  t.equal((await store.findSessionById(sessionId))?.generation, 1);
  t.equal((await store.findRetiredToken(old))?.sessionId, sessionId);
  t.ok(await store.revokeSession(sessionId, 7, 'test'));
  t.notOk(await store.rotateSession({ ...rotation, oldMaster: Buffer.alloc(32, 2), generation: 1 }), 'a revoked session is not rotated');
  await store.close();
});

// The session cache has left the store (src/services/session-cache.ts): the store reads the database
// every time, and announces changes so a cache in front of it can stay correct.
t.test('a change committed by another connection is read at once, and announced by refresh()', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const changes: StoreChange[] = [];
  store.onChange((c) => changes.push(c));
  const user = await store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const master = Buffer.alloc(32, 9);
  const id = await store.createSession({ userId: user.id, master, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  t.equal((await store.findSessionByMaster(master))?.revokedAt, null, 'looked up');

  // Another process (the CLI, a cluster worker) revokes the session and disables the user.
  const other = new Database(file);
  other.prepare('UPDATE sessions SET revoked_at = 5 WHERE id = ?').run(id);
  t.equal((await store.findSessionByMaster(master))?.revokedAt, 5, 'seen by the next lookup');
  store.refresh();
  t.same(changes, [{ kind: 'all' }], 'and announced to caches by the next refresh');
  other.prepare('UPDATE users SET disabled = 1').run();
  store.refresh();
  t.equal((await store.findSessionByMaster(master))?.userDisabled, true, 'seen');
  t.same(changes, [{ kind: 'all' }, { kind: 'all' }], 'announced');
  other.prepare('DELETE FROM sessions').run();
  store.refresh();
  t.equal(await store.findSessionByMaster(master), undefined, 'a deleted session is gone');
  t.equal(changes.length, 3);
  other.close();
  await store.close();
});

t.test("this connection's own writes are read back at once and announced as they commit", async (t) => {
  const store = openSqliteStore(tmp());
  const changes: StoreChange[] = [];
  store.onChange((c) => changes.push(c));
  const user = await store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const master = Buffer.alloc(32, 4);
  const id = await store.createSession({ userId: user.id, master, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  t.equal((await store.findSessionByMaster(master))?.lastSeenAt, 1);
  await store.touchSession(id, 50);
  t.equal((await store.findSessionByMaster(master))?.lastSeenAt, 50, 'a touch is visible at once');
  t.same(changes, [], 'and not announced (a cache records its own touches)');
  await store.revokeSession(id, 60, 'test');
  t.equal((await store.findSessionByMaster(master))?.revokedAt, 60, 'a revocation is visible at once');
  t.same(changes, [{ kind: 'session', id }], 'and announced');
  const newMaster = Buffer.alloc(32, 5);
  const user2 = await store.createUser({ email: 'b@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const id2 = await store.createSession({ userId: user2.id, master: newMaster, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  t.ok(await store.findSessionByMaster(newMaster));
  t.ok(await store.rotateSession({ sessionId: id2, oldMaster: newMaster, newMaster: Buffer.alloc(32, 6), generation: 0, now: 5, expiresAt: 9, graceUntil: 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 }));
  t.equal(await store.findSessionByMaster(newMaster), undefined, 'the rotated-out master no longer finds the session');
  t.equal((await store.findSessionByMaster(Buffer.alloc(32, 6)))?.id, id2, 'the new one does');
  t.same(changes, [{ kind: 'session', id }, { kind: 'session', id: id2 }], 'the rotation is announced');
  await store.close();
});

t.test('a v1 database upgrades to key ids: its user and session survive and the old token still checks authorized', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-v1-'));
  const log = createLogger('silent');
  const now = Date.UTC(2026, 0, 1);
  // What an install from before key rotation holds: server.key, and a database at schema v1.
  const keys = deriveKeys(loadOrCreateServerKey(dataDir, randomBytes, log));
  const db = new Database(path.join(dataDir, 'hellwall.db'));
  t.equal(migrate(db, MIGRATIONS.filter((m) => m.version === 1)), 1);
  const userId = Number(
    db.prepare("INSERT INTO users (email, phone, role, password_hash, created_at) VALUES ('old@example.com', '+1555', 'user', 'h', ?)").run(now).lastInsertRowid,
  );
  const token = newBaseToken(randomBytes);
  const mac = '00:1a:2b:3c:4d:5e';
  db.prepare(
    'INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  ).run(userId, masterToken(keys.master, token, mac, '127.0.0.1'), mac, '127.0.0.1', now, now, now + 3_600_000, now + 86_400_000);
  db.prepare('INSERT INTO passcodes (user_id, hash, mac, seen_ip, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)').run(
    userId, hashPasscode(keys.passcode, userId, 'ABC234'), mac, '127.0.0.1', now, now + 180_000,
  );
  db.close();

  const app = buildApp({ config: loadConfig({}, { dataDir, port: 0, ops: { enabled: false } }, undefined), log, clock: () => now + 1000 });
  t.teardown(() => app.close(100));
  const upgraded = new Database(path.join(dataDir, 'hellwall.db'), { readonly: true });
  t.equal(upgraded.pragma('user_version', { simple: true }), MIGRATIONS.at(-1)!.version, 'upgraded to the latest schema');
  t.same(upgraded.prepare('SELECT key_id FROM sessions').pluck().all(), [1], 'the old session is recorded as made with key 1');
  upgraded.close();
  t.equal((await app.store.findUserByEmail('old@example.com'))?.id, userId, 'the user survives');
  t.equal((await app.store.getPasscode(userId))?.keyId, 1, 'the pending passcode too, under key 1');
  t.same([...(await app.store.countSessionsByKey(now))], [[1, 1]]);
  t.equal(app.keys.current.id, 1, 'server.key is key 1 of the ring');
  const check = await app.services.tokens.check({ token, mac, seenIp: '127.0.0.1', request: 'r' }, log);
  t.equal(check.status, 'authorized', 'the token issued before the upgrade still checks authorized');
});

/** Inserts one row of whatever columns `row` names, so a fixture can be shaped as an older schema had it. */
function insert(db: Database.Database, table: string, row: Record<string, unknown>): number {
  const cols = Object.keys(row);
  const sql = `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`;
  return Number(db.prepare(sql).run(row).lastInsertRowid);
}

/** What must not change when an up-to-date database is opened again: version, schema and row counts. */
function snapshot(file: string): unknown {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    return {
      version: db.pragma('user_version', { simple: true }),
      schema: db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name').all(),
      rows: Object.fromEntries(tables.map((name) => [name, db.prepare(`SELECT count(*) FROM "${name}"`).pluck().get()])),
    };
  } finally {
    db.close();
  }
}

function schemaOf(file: string): unknown {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name').all();
  } finally {
    db.close();
  }
}

// Every released schema after v1 (v1 is the test above), upgraded to whatever is latest now. Each
// fixture holds rows only in the columns its version had: key ids since v2 (with key rotation, so
// a second key), the session's device since v4, the audit trail since v5.
for (const from of [2, 3, 4, 5]) {
  t.test(`a v${from} database upgrades to the latest schema with users, sessions, passcodes and retired tokens intact`, async (t) => {
    const latest = MIGRATIONS.at(-1)!.version;
    const dataDir = mkdtempSync(path.join(os.tmpdir(), `hellwall-v${from}-`));
    const file = path.join(dataDir, 'hellwall.db');
    const log = createLogger('silent');
    const now = Date.UTC(2026, 0, 1);
    const ip = '127.0.0.1';
    const device = 'laptop: Firefox 128 on Linux';

    // The key ring such an install has: server.key (key 1), then a rotation to key 2.
    const key1 = deriveKeys(loadOrCreateServerKey(dataDir, randomBytes, log));
    t.equal(rotateKey(dataDir, randomBytes, log), 2);
    const key2 = deriveKeys(readServerKeyFile(path.join(dataDir, keyFileName(2)), log));

    const db = new Database(file);
    t.equal(migrate(db, MIGRATIONS.filter((m) => m.version <= from)), from, `the fixture is at v${from}`);
    const sessionColumns = (db.prepare("SELECT name FROM pragma_table_info('sessions')").pluck().all() as string[]);
    t.equal(sessionColumns.includes('device'), from >= 4, 'sessions.device exists exactly from v4');

    const user = (email: string, role: string, disabled: number): number =>
      insert(db, 'users', { email, phone: '+1 555 0100', role, password_hash: `hash-of-${email}`, disabled, created_at: now - 5000 });
    const opsId = user('ops@example.com', 'user', 0);
    const adminId = user('admin@example.com', 'admin', 0);
    const goneId = user('gone@example.com', 'user', 1);
    const session = (row: Record<string, unknown>): number =>
      insert(db, 'sessions', { ip, created_at: now - 4000, last_seen_at: now - 4000, expires_at: now + 3_600_000, absolute_expires_at: now + 86_400_000, ...row });

    // A: logged in under key 1, renewed once under key 2; its old token is retired, inside its grace.
    const macA = '00:1a:2b:3c:4d:5e';
    const oldTokenA = newBaseToken(randomBytes);
    const nonce = randomBytes(16);
    const tokenA = rotatedToken(key2.rotate, oldTokenA, nonce);
    const oldMasterA = masterToken(key1.master, oldTokenA, macA, ip);
    const sessionA = session({ user_id: opsId, master: masterToken(key2.master, tokenA, macA, ip), mac: macA, generation: 1, key_id: 2 });
    insert(db, 'retired_tokens', {
      master: oldMasterA, session_id: sessionA, generation: 0, retired_at: now - 2000, grace_until: now + 28_000, nonce, key_id: 1, rotate_key_id: 2,
    });
    // B: the same operator on a second device, still under key 1; v4 recorded what the client said.
    const macB = '00:1a:2b:3c:4d:5f';
    const tokenB = newBaseToken(randomBytes);
    const sessionB = session({
      user_id: opsId, master: masterToken(key1.master, tokenB, macB, ip), mac: macB, key_id: 1, ...(from >= 4 && { device }),
    });
    // C: the admin's, logged out.
    const macC = '00:1a:2b:3c:4d:60';
    const tokenC = newBaseToken(randomBytes);
    const sessionC = session({
      user_id: adminId, master: masterToken(key2.master, tokenC, macC, ip), mac: macC, key_id: 2, revoked_at: now - 1000, revoke_reason: 'logout',
    });
    insert(db, 'passcodes', {
      user_id: opsId, hash: hashPasscode(key2.passcode, opsId, 'ABC234'), mac: macA, seen_ip: ip, reported_ip: '192.0.2.10',
      created_at: now - 500, expires_at: now + 179_500, attempts: 2, key_id: 2,
    });
    if (from >= 5) {
      insert(db, 'audit', { at: now - 4000, action: 'login', outcome: 'success', user_id: opsId, email: 'ops@example.com', ip, mac: macA, session_id: sessionA, detail: '{"device":null,"evicted":0}' });
      insert(db, 'audit', { at: now - 1000, action: 'session.logout', outcome: 'success', user_id: adminId, email: 'admin@example.com', session_id: sessionC });
    }
    db.close();

    const app = buildApp({ config: loadConfig({}, { dataDir, port: 0, ops: { enabled: false } }, undefined), log, clock: () => now + 1000 });
    t.teardown(() => app.close(100));

    const upgraded = new Database(file, { readonly: true });
    t.equal(upgraded.pragma('user_version', { simple: true }), latest, 'upgraded to the latest schema');
    const count = (table: string): unknown => upgraded.prepare(`SELECT count(*) FROM ${table}`).pluck().get();
    t.same(
      { users: count('users'), sessions: count('sessions'), passcodes: count('passcodes'), retiredTokens: count('retired_tokens'), audit: count('audit'), counters: count('counters') },
      { users: 3, sessions: 3, passcodes: 1, retiredTokens: 1, audit: from >= 5 ? 2 : 0, counters: 0 },
      'no row lost or added',
    );
    t.same(upgraded.pragma('integrity_check'), [{ integrity_check: 'ok' }], 'integrity_check is clean');
    t.same(upgraded.pragma('foreign_key_check'), [], 'foreign_key_check is clean');
    upgraded.close();
    const fresh = path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-fresh-')), 'hellwall.db');
    await openSqliteStore(fresh).close();
    t.same(schemaOf(file), schemaOf(fresh), 'the schema is exactly that of a database created at the latest version');

    const { store } = app;
    t.match(await store.findUserByEmail('ops@example.com'), { id: opsId, role: 'user', phone: '+1 555 0100', passwordHash: 'hash-of-ops@example.com', disabled: false, createdAt: now - 5000 });
    t.match(await store.findUserByEmail('admin@example.com'), { id: adminId, role: 'admin', disabled: false });
    t.match(await store.findUserByEmail('gone@example.com'), { id: goneId, disabled: true });

    const a = await store.findSessionById(sessionA);
    t.match(a, { userId: opsId, mac: macA, ip, keyId: 2, generation: 1, device: null, revokedAt: null, userEmail: 'ops@example.com', userRole: 'user' });
    t.same(a?.master, masterToken(key2.master, tokenA, macA, ip), 'session A keeps its master token');
    t.match(await store.findSessionById(sessionB), { userId: opsId, mac: macB, keyId: 1, generation: 0, device: from >= 4 ? device : null, revokedAt: null });
    t.match(await store.findSessionById(sessionC), { userId: adminId, keyId: 2, revokedAt: now - 1000, revokeReason: 'logout', userRole: 'admin' });

    const passcode = await store.getPasscode(opsId);
    t.match(passcode, { userId: opsId, mac: macA, seenIp: ip, reportedIp: '192.0.2.10', attempts: 2, keyId: 2, expiresAt: now + 179_500 });
    t.same(passcode?.hash, hashPasscode(key2.passcode, opsId, 'ABC234'), 'the passcode hash is unchanged');

    const retired = await store.findRetiredToken(oldMasterA);
    t.match(retired, { sessionId: sessionA, generation: 0, retiredAt: now - 2000, graceUntil: now + 28_000, keyId: 1, rotateKeyId: 2 });
    t.same(retired?.nonce, nonce, 'the rotation nonce survives, so the grace can hand out the same token');
    t.same([...(await store.countSessionsByKey(now))].sort(), [[1, 1], [2, 1]], 'one live session per key');
    if (from >= 5) {
      t.match((await store.queryAudit({ limit: 10 })).map((r) => [r.action, r.userId, r.sessionId, r.detail]), [
        ['session.logout', adminId, sessionC, null],
        ['login', opsId, sessionA, { device: null, evicted: 0 }],
      ], 'the audit trail survives');
    }

    // The same tokens work through the service as before the upgrade.
    t.equal(app.keys.current.id, 2);
    const check = async (token: string, mac: string) => app.services.tokens.check({ token, mac, seenIp: ip, request: 'inventory.read' }, log);
    t.match(await check(oldTokenA, macA), { status: 'renew', token: tokenA }, "session A's rotated-out token, inside its grace, gets the same successor");
    t.match(await check(tokenA, macA), { status: 'authorized', user: { email: 'ops@example.com', role: 'user' }, expiresAt: now + 3_600_000 });
    t.match(await check(tokenB, macB), { status: 'authorized', user: { email: 'ops@example.com' } }, 'a session under the older key still checks');
    t.same(await check(tokenC, macC), { status: 'unauthorized' }, 'a logged-out session stays logged out');
    const listed = await app.services.sessions.list({ token: tokenB, mac: macB, seenIp: ip }, log);
    t.same(
      listed.map((s) => ({ id: s.id, device: s.device, current: s.current })),
      [
        { id: sessionA, device: undefined, current: false },
        { id: sessionB, device: from >= 4 ? device : undefined, current: true },
      ],
      'session.list shows both of the operator\'s sessions, with the device recorded at v4',
    );

    // Opening it again migrates nothing: same version, schema and rows.
    await app.close(100);
    const before = snapshot(file);
    await openSqliteStore(file, log).close();
    t.same(snapshot(file), before, 'reopening changes nothing');
    const again = new Database(file);
    t.equal(migrate(again), latest, 'migrate has nothing left to apply');
    again.close();
  });
}

/** sqlite_sequence as a map: the last id each AUTOINCREMENT table handed out. */
function sequences(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    return Object.fromEntries((db.prepare('SELECT name, seq FROM sqlite_sequence').all() as Array<{ name: string; seq: number }>).map((r) => [r.name, r.seq]));
  } finally {
    db.close();
  }
}

t.test('a v5 database upgrades to v6: rows and ids kept, counters added, and no id is ever handed out twice', async (t) => {
  const file = tmp();
  const now = Date.UTC(2026, 0, 1);
  const db = new Database(file);
  t.equal(migrate(db, MIGRATIONS.filter((m) => m.version <= 5)), 5, 'the fixture is at v5');
  const user = (email: string): number => insert(db, 'users', { email, phone: '+1555', role: 'user', password_hash: `hash-of-${email}`, created_at: now });
  const session = (userId: number, fill: number): number =>
    insert(db, 'sessions', {
      user_id: userId, master: Buffer.alloc(32, fill), mac: 'm', ip: 'i', created_at: now, last_seen_at: now, expires_at: now + 1000, absolute_expires_at: now + 9000, key_id: 1,
    });
  const a = user('a@example.com');
  const b = user('b@example.com');
  const c = user('c@example.com');
  const sa = session(a, 1);
  const sb = session(b, 2);
  const sc = session(c, 3);
  insert(db, 'retired_tokens', { master: Buffer.alloc(32, 33), session_id: sc, generation: 0, retired_at: now, grace_until: now + 30_000, nonce: Buffer.alloc(16), key_id: 1, rotate_key_id: 1 });
  insert(db, 'passcodes', { user_id: a, hash: Buffer.alloc(32), mac: 'm', seen_ip: 'i', created_at: now, expires_at: now + 180_000, key_id: 1 });
  // The newest account, with a session, logged in and then deleted before the upgrade: only the
  // audit trail still names its ids, and SQLite (before v6) would have handed them out again.
  const d = user('d@example.com');
  const sd = session(d, 4);
  insert(db, 'audit', { at: now, action: 'login', outcome: 'success', user_id: d, email: 'd@example.com', session_id: sd });
  insert(db, 'audit', { at: now + 1, action: 'admin.user.delete', outcome: 'success', user_id: d, email: 'd@example.com', actor: 'cli:root' });
  db.prepare('DELETE FROM users WHERE id = ?').run(d);
  t.same([a, b, c, d, sa, sb, sc, sd], [1, 2, 3, 4, 1, 2, 3, 4]);
  t.equal(db.prepare('SELECT count(*) FROM sessions').pluck().get(), 3, 'the deleted account\'s session went with it');
  db.close();

  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  t.equal(await store.schemaVersion(), MIGRATIONS.at(-1)!.version, 'upgraded to the newest');
  const check = new Database(file, { readonly: true });
  t.same(check.pragma('integrity_check'), [{ integrity_check: 'ok' }], 'integrity_check is clean');
  t.same(check.pragma('foreign_key_check'), [], 'foreign_key_check is clean');
  const schema = Object.fromEntries((check.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string; sql: string }>).map((r) => [r.name, r.sql]));
  check.close();
  t.match(schema.users, /id\s+INTEGER PRIMARY KEY AUTOINCREMENT/);
  t.match(schema.sessions, /id\s+INTEGER PRIMARY KEY AUTOINCREMENT/);
  t.match(schema.counters, /WITHOUT ROWID/);
  t.notOk(schema.users_v6 ?? schema.sessions_v6, 'no rebuild table is left');
  t.same(sequences(file), { users: 4, sessions: 4 }, 'the id counters start above every id the audit trail names');

  t.same((await store.listUsers()).map((u) => [u.id, u.email]), [[a, 'a@example.com'], [b, 'b@example.com'], [c, 'c@example.com']], 'users keep their ids');
  t.same((await store.listAllOpenSessions()).map((s) => [s.id, s.userId, s.master[0]]), [[sa, a, 1], [sb, b, 2], [sc, c, 3]], 'sessions keep their ids and owners');
  t.equal((await store.findRetiredToken(Buffer.alloc(32, 33)))?.sessionId, sc, 'the retired token still points at its session');
  t.equal((await store.getPasscode(a))?.userId, a);

  // The foreign keys still cascade, and are on again on the store's connection.
  t.ok(await store.deleteUser(c));
  t.equal(await store.findSessionById(sc), undefined, 'deleting a user deletes their sessions');
  t.equal(await store.findRetiredToken(Buffer.alloc(32, 33)), undefined, 'and, through them, their retired tokens');

  const e = await store.createUser({ email: 'e@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: now });
  t.equal(e.id, 5, 'a new account does not take the id the audit trail names for the deleted one');
  const se = await store.createSession({ userId: e.id, master: Buffer.alloc(32, 5), mac: 'm', ip: 'i', createdAt: now, expiresAt: now + 1, absoluteExpiresAt: now + 2, keyId: 1 });
  t.equal(se, 5, 'nor a new session');
  t.same((await store.queryAudit({ email: 'd@example.com', limit: 10 })).map((r) => r.userId), [d, d], 'and the trail still names the deleted account alone');
});

t.test('delete the account with the highest id, add one: the new id is larger (a fresh database too)', async (t) => {
  const file = tmp();
  let store = openSqliteStore(file);
  t.teardown(() => store.close());
  const add = async (email: string) => (await store.createUser({ email, phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 })).id;
  const session = (userId: number, fill: number) =>
    store.createSession({ userId, master: Buffer.alloc(32, fill), mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  const first = await add('a@example.com');
  const newest = await add('b@example.com');
  const newestSession = await session(newest, 1);
  t.ok(await store.deleteUser(newest));
  const next = await add('c@example.com');
  t.ok(next > newest, `${next} > ${newest}`);
  t.ok((await session(next, 2)) > newestSession, 'the same for sessions');
  t.ok(first < newest);
  // And across a restart: the counter is in the database, not in memory.
  t.ok(await store.deleteUser(next));
  await store.close();
  store = openSqliteStore(file);
  t.ok((await add('d@example.com')) > next, 'after reopening too');
  t.ok((await session(first, 3)) > newestSession + 1);
});

t.test('a migration run with foreign keys off that would break one changes nothing', async (t) => {
  const file = tmp();
  const db = new Database(file);
  t.teardown(() => db.close());
  t.equal(migrate(db, MIGRATIONS.filter((m) => m.version === 1)), 1);
  const broken: Migration = {
    version: 2,
    name: 'a session of nobody',
    foreignKeysOff: true,
    sql: "INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at) VALUES (42, x'00', 'm', 'i', 1, 1, 1, 1);",
  };
  t.throws(() => migrate(db, [...MIGRATIONS.filter((m) => m.version === 1), broken]), /migration 2 \(a session of nobody\) would leave 1 broken foreign keys/);
  t.equal(db.pragma('user_version', { simple: true }), 1, 'still at v1');
  t.equal(db.prepare('SELECT count(*) FROM sessions').pluck().get(), 0, 'rolled back');
  t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys are on again');
});

t.test('a v8 database upgrades to known devices (v9) seeded from its sessions, so no operator gets a mail per device', async (t) => {
  const file = tmp();
  const now = Date.UTC(2026, 0, 1);
  const db = new Database(file);
  t.equal(migrate(db, MIGRATIONS.filter((m) => m.version <= 8)), 8, 'the fixture is at v8');
  const a = insert(db, 'users', { email: 'a@example.com', phone: '+1555', role: 'user', password_hash: 'h', created_at: now });
  const session = (mac: string, ip: string, at: number, fill: number) =>
    insert(db, 'sessions', {
      user_id: a, master: Buffer.alloc(32, fill), mac, ip, created_at: at, last_seen_at: at + 10, expires_at: at + 1000, absolute_expires_at: at + 9000, key_id: 1,
    });
  session('00:1a:2b:3c:4d:5e', '192.0.2.1', now, 1);
  session('00:1a:2b:3c:4d:5e', '192.0.2.2', now + 100, 2);
  session('00:1a:2b:3c:4d:ff', '2001:db8::1', now + 200, 3);
  db.close();

  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  t.equal(await store.schemaVersion(), MIGRATIONS.at(-1)!.version);
  t.same(
    (await store.listDevices(a)).map((d) => [d.mac, d.firstSeenAt, d.lastSeenAt, d.registeredAt]),
    [['00:1a:2b:3c:4d:5e', now, now + 110, null], ['00:1a:2b:3c:4d:ff', now + 200, now + 210, null]],
    'one device per MAC, first and last use from its sessions',
  );
  const login = { userId: a, mac: '00:1a:2b:3c:4d:5e', name: null, at: now + 1000 };
  t.same(await store.recordDeviceLogin({ ...login, ip: '192.0.2.2', addressGroup: '192.0.2.2' }), { newDevice: false, newAddress: false }, 'a known device and IPv4 address');
  t.same(await store.recordDeviceLogin({ ...login, ip: '2001:db8::1', addressGroup: '2001:db8::/64' }), { newDevice: false, newAddress: true }, 'IPv6 groups are learnt anew');
});
