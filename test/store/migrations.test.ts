import Database from 'better-sqlite3';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { buildApp } from '../../src/app.js';
import { deriveKeys, loadOrCreateServerKey } from '../../src/auth/keys.js';
import { hashPasscode } from '../../src/auth/passcodes.js';
import { masterToken, newBaseToken } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { migrate, openSqliteStore } from '../../src/store/sqlite-store.js';
import { DuplicateUserError } from '../../src/store/store.js';

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-db-')), 'hellwall.db');

t.test('migrations run once and record the schema version', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  store.close();
  const db = new Database(file);
  t.equal(db.pragma('user_version', { simple: true }), MIGRATIONS.at(-1)!.version);
  t.equal(migrate(db), MIGRATIONS.at(-1)!.version, 'running again changes nothing');
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  db.close();
});

t.test('the database file is private', async (t) => {
  const file = tmp();
  openSqliteStore(file).close();
  t.equal(statSync(file).mode & 0o077, 0, 'no group or other access');
});

t.test('data survives closing and reopening', async (t) => {
  const file = tmp();
  let store = openSqliteStore(file);
  const user = store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const id = store.createSession({ userId: user.id, master: Buffer.alloc(32, 7), mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  store.close();
  store = openSqliteStore(file);
  t.equal(store.findUserByEmail('a@b.c')?.id, user.id);
  t.equal(store.findSessionByMaster(Buffer.alloc(32, 7))?.id, id);
  t.equal(store.findSessionByMaster(Buffer.alloc(32, 7))?.userEmail, 'a@b.c', 'the owner is joined in');
  store.close();
});

t.test('a duplicate email is a DuplicateUserError', async (t) => {
  const store = openSqliteStore(tmp());
  const u = { email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 };
  store.createUser(u);
  t.throws(() => store.createUser(u), DuplicateUserError);
  store.close();
});

t.test('a rotation applies only to the generation it was computed from', async (t) => {
  const store = openSqliteStore(tmp());
  const user = store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const old = Buffer.alloc(32, 1);
  const sessionId = store.createSession({ userId: user.id, master: old, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  const rotation = { sessionId, oldMaster: old, newMaster: Buffer.alloc(32, 2), generation: 0, now: 5, expiresAt: 9, graceUntil: 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 };
  t.ok(store.rotateSession(rotation));
  t.notOk(store.rotateSession({ ...rotation, newMaster: Buffer.alloc(32, 3) }), 'a second rotation from the same state loses');
  t.equal(store.findSessionById(sessionId)?.generation, 1);
  t.equal(store.findRetiredToken(old)?.sessionId, sessionId);
  store.revokeSession(sessionId, 7, 'test');
  t.notOk(store.rotateSession({ ...rotation, oldMaster: Buffer.alloc(32, 2), generation: 1 }), 'a revoked session is not rotated');
  store.close();
});

t.test('the session cache never hides a change committed by another connection', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const user = store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const master = Buffer.alloc(32, 9);
  const id = store.createSession({ userId: user.id, master, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  t.equal(store.findSessionByMaster(master)?.revokedAt, null, 'looked up (and cached)');
  t.equal(store.readBatch(() => store.findSessionByMaster(master)?.revokedAt), null);

  // Another process (the CLI, a cluster worker) revokes the session and disables the user.
  const other = new Database(file);
  other.prepare('UPDATE sessions SET revoked_at = 5 WHERE id = ?').run(id);
  t.equal(store.findSessionByMaster(master)?.revokedAt, 5, 'seen outside a batch');
  other.prepare('UPDATE users SET disabled = 1').run();
  t.equal(store.readBatch(() => store.findSessionByMaster(master)?.userDisabled), true, 'seen in the next batch');
  other.prepare('DELETE FROM sessions').run();
  t.equal(store.findSessionByMaster(master), undefined, 'a deleted session is gone');
  other.close();
  store.close();
});

t.test('the session cache follows this connection\'s own writes', async (t) => {
  const store = openSqliteStore(tmp());
  const user = store.createUser({ email: 'a@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const master = Buffer.alloc(32, 4);
  const id = store.createSession({ userId: user.id, master, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  store.readBatch(() => {
    t.equal(store.findSessionByMaster(master)?.lastSeenAt, 1);
    store.touchSession(id, 50);
    t.equal(store.findSessionByMaster(master)?.lastSeenAt, 50, 'touch is visible in the same batch');
    store.revokeSession(id, 60, 'test');
    t.equal(store.findSessionByMaster(master)?.revokedAt, 60, 'revocation is visible in the same batch');
  });
  const newMaster = Buffer.alloc(32, 5);
  const user2 = store.createUser({ email: 'b@b.c', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  const id2 = store.createSession({ userId: user2.id, master: newMaster, mac: 'm', ip: 'i', createdAt: 1, expiresAt: 2, absoluteExpiresAt: 3, keyId: 1 });
  store.readBatch(() => {
    t.ok(store.findSessionByMaster(newMaster));
    t.ok(store.rotateSession({ sessionId: id2, oldMaster: newMaster, newMaster: Buffer.alloc(32, 6), generation: 0, now: 5, expiresAt: 9, graceUntil: 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 }));
    t.equal(store.findSessionByMaster(newMaster), undefined, 'the rotated-out master no longer finds the session');
    t.equal(store.findSessionByMaster(Buffer.alloc(32, 6))?.id, id2, 'the new one does');
  });
  store.close();
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
  t.equal(app.store.findUserByEmail('old@example.com')?.id, userId, 'the user survives');
  t.equal(app.store.getPasscode(userId)?.keyId, 1, 'the pending passcode too, under key 1');
  t.same([...app.store.countSessionsByKey(now)], [[1, 1]]);
  t.equal(app.keys.current.id, 1, 'server.key is key 1 of the ring');
  const check = app.services.tokens.check({ token, mac, seenIp: '127.0.0.1', request: 'r' }, log);
  t.equal(check.status, 'authorized', 'the token issued before the upgrade still checks authorized');
});
