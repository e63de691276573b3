import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { AuditLog } from '../../src/audit/audit-log.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { isActiveSession, liveBounds } from '../../src/services/session-rules.js';
import type { AuditEvent, Store } from '../../src/store/store.js';
import { createLogger } from '../../src/log.js';

const silentLogger = () => createLogger('silent');

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-audit-')), 'hellwall.db');
const NOW = Date.UTC(2026, 10, 22);
const DAY = 86_400_000;

type Outcome = 'written' | 'dropped' | 'coalesced';

function counting(): { audit: (o: Outcome, n: number) => void; written: number; dropped: number; coalesced: number } {
  const m = {
    written: 0,
    dropped: 0,
    coalesced: 0,
    audit(o: Outcome, n: number) {
      m[o] += n;
    },
  };
  return m;
}

const count = (file: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM audit').pluck().get() as number;
  } finally {
    db.close();
  }
};

t.test('queries filter by operator, action, prefix, outcome, time and page, newest first', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const events: AuditEvent[] = [
    { at: NOW - 5000, action: 'passcode.request', outcome: 'success', userId: 1, email: 'a@example.com', ip: '192.0.2.1', mac: '00:11:22:33:44:55' },
    { at: NOW - 4000, action: 'login', outcome: 'failure', email: 'nobody@example.com', ip: '192.0.2.9', detail: { reason: 'unknown-account' } },
    { at: NOW - 3000, action: 'login', outcome: 'success', userId: 1, email: 'a@example.com', sessionId: 7, detail: { device: null, evicted: 0 } },
    { at: NOW - 2000, action: 'admin.user.disable', outcome: 'success', userId: 2, email: 'b@example.com', actor: 'cli:root', detail: { sessionsEnded: 3 } },
    { at: NOW - 1000, action: 'admin.user.add', outcome: 'failure', email: 'a@example.com', actor: 'admin:c@example.com', detail: { reason: 'conflict' } },
    { at: NOW, action: 'token.denied', outcome: 'denied', userId: 1, email: 'a@example.com', detail: { request: 'billing.read', role: 'user' } },
  ];
  await store.appendAudit(events);
  const ids = async (q: Parameters<Store['queryAudit']>[0]) => (await store.queryAudit(q)).map((r) => r.action);

  const all = await store.queryAudit({ limit: 100 });
  t.same(all.map((r) => r.at), events.map((e) => e.at).reverse(), 'newest first');
  t.same(all.at(-1), {
    id: all.at(-1)!.id,
    at: NOW - 5000,
    action: 'passcode.request',
    outcome: 'success',
    userId: 1,
    email: 'a@example.com',
    actor: null,
    ip: '192.0.2.1',
    mac: '00:11:22:33:44:55',
    sessionId: null,
    detail: null,
  }, 'absent fields read back as null');
  t.same(all.find((r) => r.action === 'token.denied')?.detail, { request: 'billing.read', role: 'user' }, 'detail round-trips');

  t.same(await ids({ email: 'a@example.com', limit: 100 }), ['token.denied', 'admin.user.add', 'login', 'passcode.request']);
  t.same(await ids({ action: 'login', limit: 100 }), ['login', 'login']);
  t.same(await ids({ action: 'admin.*', limit: 100 }), ['admin.user.add', 'admin.user.disable'], 'a prefix');
  t.same(await ids({ action: 'admin.user*', limit: 100 }), ['admin.user.add', 'admin.user.disable'], 'a prefix without the dot');
  t.same(await ids({ action: 'log*', limit: 100 }), ['login', 'login']);
  t.same(await ids({ outcome: 'failure', limit: 100 }), ['admin.user.add', 'login']);
  t.same(await ids({ since: NOW - 3000, until: NOW, limit: 100 }), ['admin.user.add', 'admin.user.disable', 'login'], 'since inclusive, until exclusive');
  t.same(await ids({ email: 'a@example.com', outcome: 'success', action: 'login', limit: 100 }), ['login'], 'filters combine');

  const page1 = await store.queryAudit({ limit: 4 });
  const page2 = await store.queryAudit({ limit: 4, beforeId: page1.at(-1)!.id });
  t.equal(page1.length, 4);
  t.same([...page1, ...page2].map((r) => r.at), events.map((e) => e.at).reverse(), 'two pages make the whole, in order, once');
});

t.test('the queries and the retention delete search through the indexes', async (t) => {
  const file = tmp();
  await openSqliteStore(file).close();
  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  const plan = (sql: string, params: Record<string, unknown>) =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
  const byEmail = plan('SELECT * FROM audit WHERE email = @email ORDER BY id DESC LIMIT 10', { email: 'a' });
  t.match(byEmail, /SEARCH audit USING INDEX audit_email \(email=\?\)/);
  t.notMatch(byEmail, /TEMP B-TREE/, 'the index gives the order: a page reads a page, not the whole history');
  const byAction = plan('SELECT * FROM audit WHERE action = @a AND outcome = @o ORDER BY id DESC LIMIT 10', { a: 'login', o: 'failure' });
  t.match(byAction, /SEARCH audit USING INDEX audit_action \(action=\?\)/);
  t.notMatch(byAction, /TEMP B-TREE/);
  t.match(
    plan('SELECT * FROM audit WHERE action >= @f AND action < @t ORDER BY id DESC LIMIT 10', { f: 'admin.', t: 'admin.\uffff' }),
    /audit_action \(action>\? AND action<\?\)|SCAN audit/,
  );
  t.match(plan('SELECT * FROM audit WHERE at >= @s AND at < @u ORDER BY id DESC LIMIT 10', { s: 1, u: 2 }), /SEARCH audit USING INDEX audit_at \(at>\? AND at<\?\)/);
  t.notMatch(plan('DELETE FROM audit WHERE id IN (SELECT id FROM audit INDEXED BY audit_at WHERE at < @a LIMIT @b)', { a: 1, b: 2 }), /SCAN audit/);
});

t.test('housekeeping deletes audit rows past retention, in batches; 0 keeps them forever', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const old = Array.from({ length: 25 }, (_, i): AuditEvent => ({ at: NOW - 400 * DAY + i, action: 'login', outcome: 'success' }));
  await store.appendAudit([...old, { at: NOW - 364 * DAY, action: 'login', outcome: 'failure' }]);
  const policy = { idleMs: DAY, keepRevokedMs: DAY, batch: 10 };
  t.equal((await store.deleteExpired(NOW, policy)).auditRows, 0, 'no retention given: nothing deleted');
  t.equal((await store.deleteExpired(NOW, { ...policy, keepAuditMs: 0 })).auditRows, 0, 'retention 0: nothing deleted');
  const keep = { ...policy, keepAuditMs: 365 * DAY };
  const rounds: number[] = [];
  for (let i = 0; i < 3; i++) rounds.push((await store.deleteExpired(NOW, keep)).auditRows);
  t.same(rounds, [10, 10, 5], 'at most a batch per call');
  t.same((await store.queryAudit({ limit: 100 })).map((r) => r.outcome), ['failure'], 'the row inside retention stays');
});

t.test('an event recorded inside a transaction commits and rolls back with it', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const metrics = counting();
  const audit = new AuditLog({ store, clock: () => NOW, log: silentLogger(), metrics });
  t.teardown(() => store.close());
  await store.transaction(async (tx) => {
    await tx.createUser({ email: 'a@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
    await audit.recordIn(tx, { action: 'admin.user.add', outcome: 'success', email: 'a@example.com' });
    t.equal((await tx.queryAudit({ limit: 10 })).length, 1, 'written at once, inside the transaction');
  });
  await t.rejects(
    store.transaction(async (tx) => {
      await tx.createUser({ email: 'b@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
      await audit.recordIn(tx, { action: 'admin.user.add', outcome: 'success', email: 'b@example.com' });
      throw new Error('the change fails after all');
    }),
  );
  t.same((await store.queryAudit({ limit: 10 })).map((r) => r.email), ['a@example.com'], 'the failed change left no audit row');
  t.equal(await store.findUserByEmail('b@example.com'), undefined);
  t.equal(count(file), 1);
});

t.test('events outside a transaction are group-committed on the next turn, after the caller', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const metrics = counting();
  const audit = new AuditLog({ store, clock: () => NOW, log: silentLogger(), metrics });
  t.teardown(() => store.close());
  let appends = 0;
  const append = store.appendAudit.bind(store);
  store.appendAudit = (events) => {
    appends++;
    return append(events);
  };
  for (let i = 0; i < 50; i++) audit.record({ action: 'login', outcome: 'failure', email: `x${i}@example.com`, detail: { reason: 'x'.repeat(500) } });
  t.equal(count(file), 0, 'nothing written during the turn that recorded them');
  await nextTurn();
  t.equal(count(file), 50);
  t.equal(appends, 1, 'one transaction for the whole turn');
  t.equal(metrics.written, 50);
  const detail = (await store.queryAudit({ limit: 1 }))[0]!.detail!;
  t.equal((detail.reason as string).length, 200, 'long detail values are cut');
});

t.test('a busy database delays the events, loses none, and drops only beyond the bound', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const metrics = counting();
  const log = silentLogger();
  const audit = new AuditLog({ store, clock: () => NOW, log, metrics });
  t.teardown(() => store.close());
  let appends = 0;
  const append = store.appendAudit.bind(store);
  store.appendAudit = async (events) => {
    await append(events);
    appends++;
  };
  // Another process holding the write lock.
  const other = new Database(file);
  t.teardown(() => other.open && other.close());
  other.exec('BEGIN IMMEDIATE');
  // Successes: refusals (failure, denied) have a budget of their own a minute, not the point here.
  for (let i = 0; i < 10_003; i++) audit.record({ action: 'token.renew', outcome: 'success', sessionId: i });
  await nextTurn();
  t.equal(metrics.written, 0, 'nothing could be written');
  t.equal(metrics.dropped, 3, 'the oldest beyond 10,000 queued are dropped and counted');
  other.exec('COMMIT');
  other.close();
  // The retry comes on a timer.
  for (let i = 0; i < 100 && metrics.written < 10_000; i++) await sleep(20);
  t.equal(metrics.written, 10_000, 'every queued event written once the lock is gone');
  t.equal(appends, 10, 'in transactions of 1,000, a turn of the event loop apart');
  t.equal(count(file), 10_000);
  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  t.same(db.prepare('SELECT min(session_id) AS first, max(session_id) AS last FROM audit').get(), { first: 3, last: 10_002 }, 'the dropped ones were the oldest');
  t.equal(db.prepare('SELECT count(*) FROM audit a JOIN audit b ON b.id = a.id + 1 WHERE b.session_id <> a.session_id + 1').pluck().get(), 0, 'written in the order recorded');
});

t.test('close() writes what is queued; an event after close is written at once', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const metrics = counting();
  const audit = new AuditLog({ store, clock: () => NOW, log: silentLogger(), metrics });
  audit.record({ action: 'login', outcome: 'success' });
  await audit.close();
  t.equal(count(file), 1, 'flushed by close, before any turn passed');
  audit.record({ action: 'passcode.sent', outcome: 'success' });
  t.equal(count(file), 2, 'a late event (a mail callback) is not left queued');
  await store.close();
  audit.record({ action: 'passcode.sent', outcome: 'failure' });
  await nextTurn();
  t.equal(metrics.dropped, 1, 'with the database closed it is counted as dropped, not thrown');
});

t.test('repeats of one refusal within a minute are counted into the next row for it, not written', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  let now = NOW;
  const metrics = counting();
  const audit = new AuditLog({ store, clock: () => now, log: silentLogger(), metrics });
  t.teardown(() => store.close());
  const deny = (session: number) =>
    audit.record({ action: 'token.denied', outcome: 'denied', sessionId: session, detail: { request: 'admin.x' } }, `token.denied:${session}:admin.x`);
  for (let i = 0; i < 1000; i++) deny(1);
  deny(2);
  now += 59_999;
  deny(1);
  await audit.flush();
  t.same((await store.queryAudit({ limit: 10 })).map((r) => [r.sessionId, r.detail]).reverse(), [
    [1, { request: 'admin.x' }],
    [2, { request: 'admin.x' }],
  ], 'one row per key within the minute');
  t.equal(metrics.coalesced, 1000);
  now += 1;
  deny(1);
  audit.record({ action: 'token.denied', outcome: 'denied', sessionId: 1 }); // without a key: never coalesced
  await audit.flush();
  t.same((await store.queryAudit({ limit: 2 })).map((r) => r.detail).reverse(), [{ request: 'admin.x', repeated: 1000 }, null], 'a minute on: written, with the repeats left out');
  t.equal(metrics.written, 4);
});

t.test('the live-sessions gauge counts exactly what isActiveSession calls active', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const idleMs = DAY;
  const enabled = (await store.createUser({ email: 'a@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 })).id;
  const disabled = (await store.createUser({ email: 'b@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 })).id;
  let n = 0;
  // Every combination around the three limits, for both accounts, revoked or not.
  for (const userId of [enabled, disabled]) {
    for (const expires of [-1, 0, 1]) {
      for (const absolute of [-1, 0, 1]) {
        for (const seen of [-idleMs - 1, -idleMs, -idleMs + 1]) {
          for (const revoked of [false, true]) {
            const master = Buffer.alloc(32);
            master.writeUInt32BE(++n);
            const id = await store.createSession({ userId, master, mac: 'm', ip: 'i', createdAt: NOW + seen, expiresAt: NOW + expires, absoluteExpiresAt: NOW + absolute, keyId: 1 });
            if (revoked) await store.revokeSession(id, NOW, 'logout');
          }
        }
      }
    }
  }
  await store.setUserDisabled(disabled, true);
  const all = [...(await store.listOpenSessions(enabled)), ...(await store.listOpenSessions(disabled))];
  const expected = all.filter((s) => isActiveSession(s, NOW, idleMs)).length;
  t.ok(expected > 0 && expected < all.length, `a mix: ${expected} of ${all.length} open sessions active`);
  t.equal(await store.countLiveSessions(liveBounds(NOW, idleMs)), expected);
});
