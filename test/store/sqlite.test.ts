import Database from 'better-sqlite3';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { DuplicateUserError, StoreBusyError, StoreConfigError, type Store, type StoreChange, type Tx } from '../../src/store/store.js';

const tmp = () => path.join(mkdtempSync(path.join(os.tmpdir(), 'hellwall-sqlite-')), 'hellwall.db');
const NOW = Date.UTC(2026, 10, 23);

const newUser = (email: string) => ({ email, phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
const newSession = (userId: number, fill: number) => ({
  userId, master: Buffer.alloc(32, fill), mac: 'm', ip: 'i', createdAt: NOW, expiresAt: NOW + 1000, absoluteExpiresAt: NOW + 10_000, keyId: 1,
});

/** A promise the test resolves when it chooses: a transaction parked on it stays open meanwhile. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** Whether `p` has settled after the pending microtasks and one turn of the event loop. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await nextTurn();
  return done;
}

function recording(store: Store): { changes: StoreChange[]; stop: () => void } {
  const changes: StoreChange[] = [];
  const stop = store.onChange((c) => changes.push(c));
  return { changes, stop };
}

t.test('a Store call made while a transaction is open waits for it and never runs inside it', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  const g = gate();
  const failed = store.transaction(async (tx) => {
    await tx.createUser(newUser('inside@example.com'));
    await g.wait;
    throw new Error('the change fails after all');
  });
  // Issued while the transaction holds the connection, from other async flows.
  const read = store.findUserByEmail('inside@example.com');
  const write = store.createUser(newUser('outside@example.com'));
  t.notOk(await settled(read), 'the read waits');
  t.notOk(await settled(write), 'the write waits');
  const other = new Database(file, { readonly: true });
  t.teardown(() => other.close());
  t.equal(other.prepare('SELECT count(*) FROM users').pluck().get(), 0, 'nothing committed meanwhile');

  g.open();
  await t.rejects(failed, /fails after all/, 'the transaction\'s own error is rethrown');
  t.equal(await read, undefined, 'the read did not see the uncommitted (then rolled-back) row');
  t.equal((await write).email, 'outside@example.com', 'the write ran on its own after the rollback');
  t.same(other.prepare('SELECT email FROM users').pluck().all(), ['outside@example.com'], 'and committed: it was not rolled back with the transaction');
});

t.test('waiting Store calls and transactions run in the order they were made', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const order: string[] = [];
  const g = gate();
  const first = store.transaction(async (tx) => {
    await g.wait;
    await tx.createUser(newUser('first@example.com'));
    order.push('tx1');
  });
  const read = store.listUsers();
  const second = store.transaction(async (tx) => {
    await tx.createUser(newUser('second@example.com'));
    order.push('tx2');
  });
  const readAgain = store.listUsers();
  g.open();
  await Promise.all([first, second]);
  t.same(order, ['tx1', 'tx2']);
  t.same((await read).map((u) => u.email), ['first@example.com'], 'the read ran after the first transaction, before the second');
  t.equal((await readAgain).length, 2, 'the next read after both');
});

t.test('a Store call runs at once when no transaction is open', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  void store.createUser(newUser('now@example.com'));
  // No await in between: the row is committed by the time the call returns its promise.
  const other = new Database(file, { readonly: true });
  t.teardown(() => other.close());
  t.equal(other.prepare('SELECT count(*) FROM users').pluck().get(), 1);
});

t.test('a transaction commits everything done through tx, or nothing', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  const result = await store.transaction(async (tx) => {
    const u = await tx.createUser(newUser('a@example.com'));
    const s = await tx.createSession(newSession(u.id, 1));
    await tx.appendAudit([{ at: NOW, action: 'login', outcome: 'success', userId: u.id, sessionId: s }]);
    t.equal((await tx.findSessionById(s))?.userEmail, 'a@example.com', 'the transaction reads its own writes');
    return { user: u.id, session: s };
  });
  t.equal((await store.findSessionById(result.session))?.userId, result.user, 'committed');

  const err = new Error('no');
  await t.rejects(
    store.transaction(async (tx) => {
      const u = await tx.createUser(newUser('b@example.com'));
      await tx.createSession(newSession(u.id, 2));
      await tx.revokeSession(result.session, NOW, 'logout');
      await tx.appendAudit([{ at: NOW, action: 'login', outcome: 'success', userId: u.id }]);
      await tx.hitCounters(['login:b'], NOW, NOW + 60_000);
      await tx.putPasscode({ userId: u.id, hash: Buffer.alloc(32), mac: 'm', seenIp: 'i', reportedIp: null, createdAt: NOW, expiresAt: NOW + 1, attempts: 0, keyId: 1 });
      throw err;
    }),
    err,
    'the very error thrown is rethrown',
  );
  t.equal(await store.findUserByEmail('b@example.com'), undefined, 'rolled back: no user');
  t.equal(await store.findSessionByMaster(Buffer.alloc(32, 2)), undefined, 'no session');
  t.equal((await store.findSessionById(result.session))?.revokedAt, null, 'the revocation undone');
  t.equal((await store.queryAudit({ limit: 10 })).length, 1, 'no audit row');
  t.same(await store.readCounters(['login:b'], NOW), [undefined], 'no counter');
  t.equal(await store.countPendingPasscodes(NOW), 0, 'no passcode');
  const other = new Database(file, { readonly: true });
  t.teardown(() => other.close());
  t.same(other.prepare('SELECT email FROM users').pluck().all(), ['a@example.com']);
});

t.test('a failed statement inside a transaction is a typed error the transaction can recover from', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  await store.createUser(newUser('a@example.com'));
  const id = await store.transaction(async (tx) => {
    await t.rejects(tx.createUser(newUser('a@example.com')), DuplicateUserError);
    return (await tx.createUser(newUser('b@example.com'))).id;
  });
  t.equal((await store.findUserById(id))?.email, 'b@example.com', 'the rest of the transaction committed');
  await t.rejects(store.createUser(newUser('a@example.com')), DuplicateUserError, 'on the Store too');
});

t.test('a tx handle used after its transaction ended fails clearly', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  let kept: Tx | undefined;
  await store.transaction(async (tx) => {
    kept = tx;
  });
  await t.rejects(kept!.findUserById(1), /transaction has ended/, 'after commit');
  await t.rejects(kept!.createUser(newUser('late@example.com')), /transaction has ended/);
  t.equal(await store.findUserByEmail('late@example.com'), undefined, 'and nothing was written');
  await t.rejects(
    store.transaction(async (tx) => {
      kept = tx;
      throw new Error('rollback');
    }),
  );
  await t.rejects(kept!.listUsers(), /transaction has ended/, 'after rollback');
  // A write started inside but left to run after the end (not awaited by fn) is refused too.
  let late: Promise<unknown> | undefined;
  await store.transaction(async (tx) => {
    late = nextTurn().then(() => tx.createUser(newUser('straggler@example.com')));
  });
  await t.rejects(late!, /transaction has ended/);
  t.equal(await store.findUserByEmail('straggler@example.com'), undefined);
});

t.test('a transaction that finds the database locked is StoreBusyError, and the store carries on', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  const other = new Database(file);
  t.teardown(() => other.open && other.close());
  other.exec('BEGIN IMMEDIATE');
  let ran = false;
  await t.rejects(
    store.transaction(async () => {
      ran = true;
    }),
    StoreBusyError,
  );
  t.notOk(ran, 'fn never ran');
  await t.rejects(store.createUser(newUser('a@example.com')), StoreBusyError, 'a Store write is busy too');
  t.equal(await store.touchSession(1, NOW), false, 'a touch is best effort: false, not an error');
  other.exec('COMMIT');
  t.equal(await store.transaction(async (tx) => (await tx.createUser(newUser('a@example.com'))).id), 1, 'the mutex was released');
  t.ok(await store.findUserByEmail('a@example.com'));
});

t.test('close waits for the transaction under way', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  const g = gate();
  const tx = store.transaction(async (tx) => {
    await g.wait;
    await tx.createUser(newUser('a@example.com'));
  });
  const closed = store.close();
  t.notOk(await settled(closed));
  g.open();
  await tx;
  await closed;
  await t.rejects(store.ping(), 'a closed store fails its readiness check');
  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.prepare('SELECT count(*) FROM users').pluck().get(), 1, 'the transaction committed');
});

t.test('own writes are announced once committed, naming what changed; touches are not', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const feed = recording(store);
  const u = await store.createUser(newUser('a@example.com'));
  const other = await store.createUser(newUser('b@example.com'));
  const s = await store.createSession(newSession(u.id, 1));
  const s2 = await store.createSession(newSession(u.id, 2));
  t.same(feed.changes, [], 'new rows are not announced');

  t.ok(await store.touchSession(s, NOW + 5));
  t.same(feed.changes, [], 'a touch is not announced');
  t.ok(await store.rotateSession({ sessionId: s, oldMaster: Buffer.alloc(32, 1), newMaster: Buffer.alloc(32, 3), generation: 0, now: NOW, expiresAt: NOW + 9, graceUntil: NOW + 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 }));
  t.ok(await store.revokeSession(s2, NOW, 'logout'));
  t.notOk(await store.revokeSession(s2, NOW, 'logout'), 'revoking again changes nothing');
  t.notOk(await store.rotateSession({ sessionId: s, oldMaster: Buffer.alloc(32, 1), newMaster: Buffer.alloc(32, 4), generation: 0, now: NOW, expiresAt: NOW + 9, graceUntil: NOW + 6, nonce: Buffer.alloc(16), keyId: 1, oldKeyId: 1 }));
  t.same(feed.changes, [{ kind: 'session', id: s }, { kind: 'session', id: s2 }], 'rotation and revocation, once each');

  feed.changes.length = 0;
  t.ok(await store.setUserRole(other.id, 'admin'));
  t.ok(await store.setUserDisabled(other.id, true));
  t.ok(await store.setPasswordHash(other.id, 'h2'));
  t.notOk(await store.setPasswordHash(other.id, 'h3', 'not-current'));
  t.equal(await store.revokeUserSessions(u.id, NOW, 'admin'), 1);
  t.equal(await store.revokeUserSessions(u.id, NOW, 'admin'), 0);
  t.ok(await store.deleteUser(other.id));
  t.notOk(await store.setUserRole(999, 'admin'));
  t.same(feed.changes, [
    { kind: 'user', id: other.id },
    { kind: 'user', id: other.id },
    { kind: 'user', id: other.id },
    { kind: 'user', id: u.id },
    { kind: 'user', id: other.id },
  ], 'account changes name the account; writes that changed nothing are silent');

  feed.changes.length = 0;
  const s3 = await store.createSession({ ...newSession(u.id, 5), keyId: 2 });
  t.same(await store.revokeByKey(2, NOW, 'key-retired'), { sessions: 1, passcodes: 0 });
  t.same(await store.revokeByKey(2, NOW, 'key-retired'), { sessions: 0, passcodes: 0 });
  t.same(feed.changes, [{ kind: 'all' }], 'revocation by key announces all, once it revoked any');
  t.ok(s3);

  feed.changes.length = 0;
  const policy = { idleMs: 1, keepRevokedMs: 0, batch: 100 };
  t.equal((await store.deleteExpired(NOW + 1, policy)).sessions, 3);
  t.equal((await store.deleteExpired(NOW + 1, policy)).sessions, 0);
  t.same(feed.changes, [{ kind: 'all' }], 'housekeeping announces all when it deleted sessions');

  feed.changes.length = 0;
  await store.hitCounters(['k'], NOW, NOW + 1);
  await store.appendAudit([{ at: NOW, action: 'login', outcome: 'failure' }]);
  t.same(feed.changes, [], 'counters and the audit trail are not announced');
  feed.stop();
  await store.setUserRole(u.id, 'admin');
  t.same(feed.changes, [], 'an unsubscribed listener hears nothing');
});

t.test('a transaction\'s changes are announced after its COMMIT, and never after a rollback', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const u = await store.createUser(newUser('a@example.com'));
  const s = await store.createSession(newSession(u.id, 1));
  const feed = recording(store);
  await store.transaction(async (tx) => {
    t.ok(await tx.revokeSession(s, NOW, 'logout'));
    t.ok(await tx.setUserDisabled(u.id, true));
    t.same(feed.changes, [], 'nothing announced while the transaction is open');
  });
  t.same(feed.changes, [{ kind: 'session', id: s }, { kind: 'user', id: u.id }], 'announced at commit, in order');

  feed.changes.length = 0;
  await t.rejects(
    store.transaction(async (tx) => {
      await tx.setUserDisabled(u.id, false);
      await tx.deleteUser(u.id);
      throw new Error('rolled back');
    }),
  );
  t.same(feed.changes, [], 'a rollback announces nothing');
  t.equal((await store.findUserById(u.id))?.disabled, true);
});

t.test('another connection\'s commit is announced as all by refresh(), once; own commits are not', async (t) => {
  const file = tmp();
  const store = openSqliteStore(file);
  t.teardown(() => store.close());
  const u = await store.createUser(newUser('a@example.com'));
  const s = await store.createSession(newSession(u.id, 1));
  const feed = recording(store);
  store.refresh();
  t.same(feed.changes, [], 'nothing happened elsewhere');
  await store.transaction(async (tx) => {
    await tx.touchSession(s, NOW + 1);
  });
  await store.touchSession(s, NOW + 2);
  store.refresh();
  t.same(feed.changes, [], 'this connection\'s own commits do not move data_version');

  // The CLI, or another worker, revokes the session.
  const other = new Database(file);
  t.teardown(() => other.close());
  other.prepare('UPDATE sessions SET revoked_at = 5 WHERE id = ?').run(s);
  t.same(feed.changes, [], 'nothing is heard until refresh()');
  store.refresh();
  t.same(feed.changes, [{ kind: 'all' }]);
  store.refresh();
  t.same(feed.changes, [{ kind: 'all' }], 'announced once per change seen');
  t.equal((await store.findSessionByMaster(Buffer.alloc(32, 1)))?.revokedAt, 5, 'and the store reads it: no cache in the store');
  other.prepare('DELETE FROM sessions').run();
  store.refresh();
  t.equal(feed.changes.length, 2);
  t.equal(await store.findSessionByMaster(Buffer.alloc(32, 1)), undefined);
  t.equal(store.coherent, true, 'SQLite never loses its feed');
  t.equal(store.backend, 'sqlite');
});

t.test('a listener that throws breaks neither the write nor the other listeners', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const u = await store.createUser(newUser('a@example.com'));
  store.onChange(() => {
    throw new Error('listener bug');
  });
  const feed = recording(store);
  t.equal(await store.setUserDisabled(u.id, true), true, 'the write answers normally');
  t.equal(await store.transaction(async (tx) => tx.setUserRole(u.id, 'admin')), true, 'a transaction too');
  t.same(feed.changes, [{ kind: 'user', id: u.id }, { kind: 'user', id: u.id }], 'the next listener still hears both');
});

t.test('the same listener registered twice is two registrations', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const u = await store.createUser(newUser('a@example.com'));
  let heard = 0;
  const listener = () => void heard++;
  const stop1 = store.onChange(listener);
  store.onChange(listener);
  await store.setUserRole(u.id, 'admin');
  t.equal(heard, 2);
  stop1();
  await store.setUserRole(u.id, 'user');
  t.equal(heard, 3);
});

t.test('counters count atomically, start over once expired, block, and are forgotten', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const exp = NOW + 60_000;
  t.same(await store.hitCounters(['ip:1', 'user:1'], NOW, exp), [{ count: 1, until: 0, expiresAt: exp }, { count: 1, until: 0, expiresAt: exp }]);
  t.same(await store.hitCounters(['ip:1'], NOW + 1, NOW + 30_000), [{ count: 2, until: 0, expiresAt: exp }], 'the expiry never moves back');
  t.same(await store.hitCounters(['ip:1'], NOW + 2, exp + 5), [{ count: 3, until: 0, expiresAt: exp + 5 }], 'it moves forward');
  await store.blockCounter('user:1', NOW + 120_000);
  t.same(await store.readCounters(['user:1', 'ip:1', 'none'], NOW), [
    { count: 1, until: NOW + 120_000, expiresAt: NOW + 120_000 },
    { count: 3, until: 0, expiresAt: exp + 5 },
    undefined,
  ], 'in the order asked; a block lasts at least as long as the counter');
  await store.blockCounter('user:1', NOW + 1);
  t.equal((await store.readCounters(['user:1'], NOW))[0]?.until, NOW + 120_000, 'a block is never shortened');
  await store.blockCounter('fresh', NOW + 10);
  t.same(await store.readCounters(['fresh'], NOW), [{ count: 0, until: NOW + 10, expiresAt: NOW + 10 }], 'blocking an unknown counter makes one');

  t.same(await store.readCounters(['ip:1'], exp + 5), [undefined], 'expired at its expiry');
  t.same(await store.hitCounters(['ip:1'], exp + 5, exp + 100), [{ count: 1, until: 0, expiresAt: exp + 100 }], 'an expired counter starts over at 1');
  t.same(await store.hitCounters(['user:1'], NOW + 120_000, NOW + 200_000), [{ count: 1, until: 0, expiresAt: NOW + 200_000 }], 'and forgets its block');

  await store.clearCounters(['ip:1', 'user:1']);
  t.same(await store.readCounters(['ip:1', 'user:1'], NOW), [undefined, undefined]);
  t.equal((await store.deleteExpired(NOW + 11, { idleMs: 1, keepRevokedMs: 1, batch: 10 })).counters, 1, 'housekeeping deletes the expired one');
});

t.test('exclusive runs one task of a name at a time in this process', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  const g = gate();
  const first = store.exclusive('housekeeping', async () => {
    await g.wait;
    return 'first';
  });
  t.equal(await store.exclusive('housekeeping', async () => 'second'), undefined, 'the same name while held: not run');
  t.equal(await store.exclusive('other', async () => 'other'), 'other', 'another name runs');
  g.open();
  t.equal(await first, 'first');
  t.equal(await store.exclusive('housekeeping', async () => 'third'), 'third', 'free again once done');
  await t.rejects(store.exclusive('housekeeping', async () => Promise.reject(new Error('boom'))), /boom/);
  t.equal(await store.exclusive('housekeeping', async () => 'after'), 'after', 'and after a failure');
});

t.test('ping, schemaVersion, lockUser', async (t) => {
  const store = openSqliteStore(tmp());
  t.teardown(() => store.close());
  await store.ping();
  t.equal(await store.schemaVersion(), MIGRATIONS.at(-1)!.version);
  await store.transaction(async (tx) => {
    await tx.lockUser(1);
  });
  await store.lockUser(1);
  t.pass('lockUser is a no-op: the write lock serializes every transaction');
});

t.test('a database of a newer schema than this code knows is a StoreConfigError naming the versions', async (t) => {
  const file = tmp();
  const db = new Database(file);
  db.pragma(`user_version = ${MIGRATIONS.at(-1)!.version + 1}`);
  db.close();
  t.throws(() => openSqliteStore(file), StoreConfigError);
  t.throws(() => openSqliteStore(file), new RegExp(`schema version ${MIGRATIONS.at(-1)!.version + 1}, newer than this Hellwall knows \\(${MIGRATIONS.at(-1)!.version}\\)`));
});
