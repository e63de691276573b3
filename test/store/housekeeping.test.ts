import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { ExpiredCounts, ExpiryPolicy, Store, StoreChange, StoreOps } from '../../src/store/store.js';

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-hk-')), 'hellwall.db');

const NOW = Date.UTC(2026, 10, 21);
const IDLE = 86_400_000;
const KEEP = 7 * IDLE;
const POLICY: ExpiryPolicy = { idleMs: IDLE, keepRevokedMs: KEEP, batch: 500 };
const FAR = NOW + 30 * IDLE;

let masters = 0;
const nextMaster = (): Buffer => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(++masters);
  return b;
};

async function userOf(store: StoreOps, email = `u${masters}-${Math.random()}@example.com`): Promise<number> {
  return (await store.createUser({ email, phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 })).id;
}

/** A session whose last activity is `lastSeenAt` (its creation), with the given limits. */
async function session(store: StoreOps, userId: number, s: { lastSeenAt: number; expiresAt: number; absoluteExpiresAt: number }): Promise<{ id: number; master: Buffer }> {
  const master = nextMaster();
  const id = await store.createSession({ userId, master, mac: 'm', ip: 'i', createdAt: s.lastSeenAt, expiresAt: s.expiresAt, absoluteExpiresAt: s.absoluteExpiresAt, keyId: 1 });
  return { id, master };
}

/** Renews the session at `now` (its last activity then); returns the master it retired. */
async function rotate(store: StoreOps, s: { id: number; master: Buffer }, generation: number, now: number, expiresAt: number): Promise<Buffer> {
  const newMaster = nextMaster();
  const ok = await store.rotateSession({ sessionId: s.id, oldMaster: s.master, newMaster, generation, now, expiresAt, graceUntil: now + 30_000, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 });
  if (!ok) throw new Error('rotation failed');
  const old = s.master;
  s.master = newMaster;
  return old;
}

/** deleteExpired until a call deletes less than the batch from every table; every call's counts. */
async function drain(store: Store, now: number, policy: ExpiryPolicy): Promise<ExpiredCounts[]> {
  const calls: ExpiredCounts[] = [];
  for (;;) {
    const c = await store.deleteExpired(now, policy);
    calls.push(c);
    if (Object.values(c).every((n) => n < policy.batch)) return calls;
  }
}

const sum = (calls: ExpiredCounts[]): ExpiredCounts => ({
  passcodes: calls.reduce((a, c) => a + c.passcodes, 0),
  sessions: calls.reduce((a, c) => a + c.sessions, 0),
  retiredTokens: calls.reduce((a, c) => a + c.retiredTokens, 0),
  auditRows: calls.reduce((a, c) => a + c.auditRows, 0),
  counters: calls.reduce((a, c) => a + c.counters, 0),
});

t.test('deletes exactly the rows that can never be used again', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  const u = await userOf(store, 'a@example.com');

  const live = await session(store, u, { lastSeenAt: NOW - 1000, expiresAt: NOW + 1000, absoluteExpiresAt: FAR });
  const liveRetired = await rotate(store, live, 0, NOW - 500, NOW + 3_600_000);
  const renewable = await session(store, u, { lastSeenAt: NOW - IDLE + 1, expiresAt: NOW - 1, absoluteExpiresAt: FAR });
  // Idle far beyond the renewal limit, but its token has not expired: it still checks authorized.
  const unexpiredIdle = await session(store, u, { lastSeenAt: NOW - 3 * IDLE, expiresAt: NOW + 1, absoluteExpiresAt: FAR });
  const revokedRecently = await session(store, u, { lastSeenAt: NOW - 40 * IDLE, expiresAt: NOW - 39 * IDLE, absoluteExpiresAt: NOW - 10 * IDLE });
  await store.revokeSession(revokedRecently.id, NOW - KEEP + 60_000, 'logout');

  const pastAbsolute = await session(store, u, { lastSeenAt: NOW - 1000, expiresAt: NOW, absoluteExpiresAt: NOW });
  const idleExpired = await session(store, u, { lastSeenAt: NOW - 2 * IDLE, expiresAt: NOW - 2 * IDLE + 10, absoluteExpiresAt: FAR });
  const idleRetired = await rotate(store, idleExpired, 0, NOW - IDLE, NOW - IDLE + 3_600_000);
  const revokedLongAgo = await session(store, u, { lastSeenAt: NOW - 1000, expiresAt: NOW + 1000, absoluteExpiresAt: FAR });
  await store.revokeSession(revokedLongAgo.id, NOW - KEEP, 'token-reuse');

  const passcode = { hash: Buffer.alloc(32), mac: 'm', seenIp: 'i', reportedIp: null, createdAt: NOW - 1000, attempts: 0, keyId: 1 };
  const expiredOwner = await userOf(store, 'b@example.com');
  await store.putPasscode({ ...passcode, userId: expiredOwner, expiresAt: NOW });
  await store.putPasscode({ ...passcode, userId: u, expiresAt: NOW + 1 });

  // Counters: one expired exactly now, one live.
  await store.hitCounters(['expired'], NOW - 2000, NOW);
  await store.hitCounters(['live'], NOW - 2000, NOW + 1);

  t.same(await store.deleteExpired(NOW, POLICY), { passcodes: 1, sessions: 3, retiredTokens: 1, auditRows: 0, counters: 1 });
  t.same(await store.deleteExpired(NOW, POLICY), { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 }, 'nothing more on a second call');

  for (const [name, s] of Object.entries({ live, renewable, unexpiredIdle, revokedRecently })) t.ok(await store.findSessionById(s.id), `${name} stays`);
  for (const [name, s] of Object.entries({ pastAbsolute, idleExpired, revokedLongAgo })) t.equal(await store.findSessionById(s.id), undefined, `${name} goes`);
  t.equal((await store.findRetiredToken(liveRetired))?.sessionId, live.id, 'a live session keeps its retired tokens (reuse detection)');
  t.equal(await store.findRetiredToken(idleRetired), undefined, 'a dead session\'s go with it');
  t.ok(await store.getPasscode(u), 'an unexpired passcode stays');
  t.equal(await store.getPasscode(expiredOwner), undefined, 'an expired passcode goes');

  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  const retired = db.prepare('SELECT session_id FROM retired_tokens').pluck().all();
  t.same(retired, [live.id], 'no other retired token is left');
  t.same(db.prepare('SELECT key FROM counters').pluck().all(), ['live'], 'only the live counter is left');

  // A moment later the token of `unexpiredIdle` has expired too, and `renewable` has been idle too long.
  const later = await store.deleteExpired(NOW + 1000, POLICY);
  t.equal(later.sessions, 2, 'unexpiredIdle and renewable go once they can no longer be used');
  t.equal(later.counters, 1, 'and the counter once expired');
  t.equal((await store.findSessionById(revokedRecently.id))?.revokeReason, 'logout', 'the recently revoked session is still kept');
});

t.test('keepRevokedMs 0 deletes revoked sessions at once', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const s = await session(store, await userOf(store), { lastSeenAt: NOW - 1000, expiresAt: NOW + 1000, absoluteExpiresAt: FAR });
  await store.revokeSession(s.id, NOW, 'logout');
  t.equal((await store.deleteExpired(NOW, { ...POLICY, keepRevokedMs: 0 })).sessions, 1);
});

t.test('each call deletes at most the batch size from each table', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const passcode = { hash: Buffer.alloc(32), mac: 'm', seenIp: 'i', reportedIp: null, createdAt: 1, attempts: 0, keyId: 1, expiresAt: NOW - 1 };
  await store.transaction(async (tx) => {
    for (let i = 0; i < 25; i++) {
      const u = await userOf(tx);
      await tx.putPasscode({ ...passcode, userId: u });
      await session(tx, u, { lastSeenAt: NOW - 2 * IDLE, expiresAt: NOW - IDLE, absoluteExpiresAt: NOW - 1 });
      await tx.hitCounters([`c${i}`], NOW - 10, NOW - 1);
    }
  });
  // One dead session with many renewals behind it: its retired tokens come in batches too.
  const long = await session(store, await userOf(store), { lastSeenAt: NOW - 3 * IDLE, expiresAt: NOW - 3 * IDLE, absoluteExpiresAt: FAR });
  for (let g = 0; g < 34; g++) await rotate(store, long, g, NOW - 3 * IDLE + g, NOW - 2 * IDLE);

  const policy = { ...POLICY, batch: 10 };
  const calls = await drain(store, NOW, policy);
  for (const c of calls) t.ok(Object.values(c).every((n) => n <= 10), `at most 10 per table: ${JSON.stringify(c)}`);
  t.ok(calls.length >= 4, `${calls.length} calls`);
  t.same(sum(calls), { passcodes: 25, sessions: 26, retiredTokens: 34, auditRows: 0, counters: 25 });
  t.equal(await store.findSessionById(long.id), undefined);
});

t.test('deleting sessions is announced on the change feed, so no cache can keep serving one', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const s = await session(store, await userOf(store), { lastSeenAt: NOW - 2 * IDLE, expiresAt: NOW - IDLE, absoluteExpiresAt: NOW - 1 });
  const other = await session(store, await userOf(store), { lastSeenAt: NOW, expiresAt: NOW + 1000, absoluteExpiresAt: FAR });
  const changes: StoreChange[] = [];
  store.onChange((c) => changes.push(c));
  t.equal((await store.findSessionByMaster(s.master))?.id, s.id, 'found before');
  await store.hitCounters(['gone'], NOW - 10, NOW - 1);
  t.equal((await store.deleteExpired(NOW, POLICY)).counters, 1);
  t.same(changes, [{ kind: 'all' }], 'a round that deleted a session announces it');
  t.equal(await store.findSessionByMaster(s.master), undefined, 'gone at once');
  t.equal((await store.findSessionByMaster(other.master))?.id, other.id, 'the live one still found');
  await store.hitCounters(['gone'], NOW - 10, NOW - 1);
  t.same(await store.deleteExpired(NOW, POLICY), { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 1 });
  t.same(changes, [{ kind: 'all' }], 'a round that deleted no session announces nothing');
});

t.test('migration 3 adds the partial indexes housekeeping reads through', async (t) => {
  const file = tmp();
  await openSqliteStore(file).close();
  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  const indexes = Object.fromEntries(
    (db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL").all() as Array<{ name: string; sql: string }>).map(
      (r) => [r.name, r.sql.replace(/\s+/g, ' ')],
    ),
  );
  t.match(indexes.sessions_open_absolute, /ON sessions\(absolute_expires_at\) WHERE revoked_at IS NULL/);
  t.match(indexes.sessions_open_last_seen, /ON sessions\(last_seen_at\) WHERE revoked_at IS NULL/);
  t.match(indexes.sessions_revoked, /ON sessions\(revoked_at\) WHERE revoked_at IS NOT NULL/);
  // The statements name their index (INDEXED BY), so opening the store at all proves they use it;
  // the plans below show the searches are ranges, never scans.
  const plan = (sql: string, n: number) =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...Array<number>(n).fill(1)) as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
  t.match(plan('SELECT id FROM sessions INDEXED BY sessions_revoked WHERE revoked_at <= ? LIMIT ?', 2), /SEARCH sessions USING COVERING INDEX sessions_revoked \(revoked_at<\?\)/);
  t.match(
    plan('SELECT id FROM sessions INDEXED BY sessions_open_absolute WHERE revoked_at IS NULL AND absolute_expires_at <= ? AND expires_at <= ? LIMIT ?', 3),
    /SEARCH sessions USING INDEX sessions_open_absolute \(absolute_expires_at<\?\)/,
  );
  t.match(
    plan('SELECT id FROM sessions INDEXED BY sessions_open_last_seen WHERE revoked_at IS NULL AND last_seen_at <= ? AND expires_at <= ? AND absolute_expires_at > ? LIMIT ?', 4),
    /SEARCH sessions USING INDEX sessions_open_last_seen \(last_seen_at<\?\)/,
  );
  t.notMatch(plan('DELETE FROM retired_tokens WHERE master IN (SELECT master FROM retired_tokens WHERE session_id = ? LIMIT ?)', 2), /SCAN/);
  t.notMatch(plan('DELETE FROM passcodes WHERE user_id IN (SELECT user_id FROM passcodes INDEXED BY passcodes_expires WHERE expires_at <= ? LIMIT ?)', 2), /SCAN/);
  t.notMatch(plan('DELETE FROM counters WHERE key IN (SELECT key FROM counters INDEXED BY counters_expires WHERE expires_at <= ? LIMIT ?)', 2), /SCAN/);
});
