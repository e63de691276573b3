import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import {
  DuplicateUserError,
  StoreBusyError,
  type AuditEvent,
  type AuditQuery,
  type ExpiredCounts,
  type ExpiryPolicy,
  type LiveBounds,
  type NewSession,
  type PasscodeRecord,
  type Rotation,
  type Store,
  type StoreChange,
} from '../../src/store/store.js';

/**
 * One suite for every Store backend (as aedes-persistence's abstract suite is for its backends):
 * each runner (conformance-<backend>.test.ts) hands it a factory, and every backend must pass all
 * of it. Not a test file by itself (no `.test.` in the name), so tap runs it only through a runner.
 */
export interface ConformanceFactory {
  /** A new empty store (fresh database/file): its own "node". */
  open(): Promise<Store>;
  /** A second store on the SAME database as the given one (a second process/node). */
  openPeer(store: Store): Promise<Store>;
  /**
   * True where a writer that meets another connection's lock may be refused with StoreBusyError
   * instead of waiting for it (SQLite waits only briefly, blocking its thread). A race's loser may
   * then be busy; where false, every loser must get the ordinary answer (false, undefined, …).
   */
  readonly busyUnderContention?: boolean;
  /**
   * True where `exclusive` excludes every store on the database (PostgreSQL's advisory locks), not
   * only the store it is called on (SQLite, whose writers are serialized anyway).
   */
  readonly exclusiveAcrossPeers?: boolean;
  /**
   * How many subtests may run at once (default 1). Each has its own database, so only time is
   * shared; worth it where opening a store is mostly waiting (new connections to a server).
   */
  readonly jobs?: number;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
// Beyond 2^31 on purpose: a backend that hands back 64-bit integers as strings fails every
// deep comparison below.
const NOW = Date.UTC(2026, 10, 21);
const FAR = NOW + 30 * DAY;
const IDLE = DAY;
const KEEP = 7 * DAY;

type Settled<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown };

/** The outcome of `fn`, including a synchronous throw, without ever rejecting. */
function attempt<T>(fn: () => Promise<T>): Promise<Settled<T>> {
  return new Promise<T>((resolve) => resolve(fn())).then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

const isBusy = (r: Settled<unknown>): boolean => !r.ok && r.error instanceof StoreBusyError;
const describe = (r: Settled<unknown>): string =>
  r.ok ? `ok ${String(r.value)}` : `${(r.error as Error).name}: ${(r.error as Error).message}`;

/** What a cache must drop for a change: a session (and its owner's events cover it) or a user. */
interface Subject {
  readonly sessionId?: number;
  readonly userId: number;
}
const covers = (c: StoreChange, s: Subject): boolean =>
  c.kind === 'all' ||
  (c.kind === 'user' && c.id === s.userId) ||
  (c.kind === 'session' && s.sessionId !== undefined && c.id === s.sessionId);

/** Records a store's change feed, and waits for events without hanging. */
function listen(store: Store): {
  readonly events: StoreChange[];
  stop(): void;
  waitFor(pred: (c: StoreChange) => boolean, ms: number): Promise<boolean>;
  quiet(): Promise<void>;
} {
  const events: StoreChange[] = [];
  const stop = store.onChange((c) => events.push(c));
  return {
    events,
    stop,
    async waitFor(pred, ms) {
      const until = Date.now() + ms;
      for (;;) {
        if (events.some(pred)) return true;
        if (Date.now() >= until) return false;
        await sleep(5);
      }
    },
    // Until nothing has been announced for 100 ms (at most 1 s), then forgets what was: echoes of
    // setup writes (a backend that hears its own notifications) must not count for the case.
    async quiet() {
      const until = Date.now() + SECOND;
      let seen = -1;
      while (seen !== events.length && Date.now() < until) {
        seen = events.length;
        await sleep(100);
      }
      events.length = 0;
    },
  };
}

/** Polls `pred` every 5 ms for at most `ms`. */
async function eventually(pred: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() >= until) return false;
    await sleep(5);
  }
  return true;
}

/**
 * Registers the conformance suite for one backend under `t`, as subtests of one test named after
 * the backend. Every subtest opens its own store(s) from `factory` and closes them at its end.
 */
export function storeConformance(t: Test, name: string, factory: ConformanceFactory): void {
  // Unique master tokens and emails across the whole suite, reproducible from run to run.
  let serial = 0;
  const master = (): Buffer => {
    const b = Buffer.alloc(32, 0xa5);
    b.writeUInt32BE(++serial);
    return b;
  };
  const email = (tag = 'u'): string => `${tag}-${++serial}@example.com`;

  const open = async (t: Test): Promise<Store> => {
    const store = await factory.open();
    t.teardown(() => store.close());
    return store;
  };
  const peerOf = async (t: Test, store: Store): Promise<Store> => {
    const peer = await factory.openPeer(store);
    t.teardown(() => peer.close());
    return peer;
  };
  // A loser of a race: the ordinary answer, or busy where the backend may refuse a waiting writer.
  const lostFairly = (r: Settled<unknown>, ordinary: (v: unknown) => boolean): boolean =>
    (r.ok && ordinary(r.value)) || (factory.busyUnderContention === true && isBusy(r));

  const addUser = async (s: Store, over: { email?: string; role?: string } = {}) =>
    s.createUser({ email: over.email ?? email(), phone: '+15550100', role: over.role ?? 'user', passwordHash: 'hash-1', createdAt: NOW - DAY });

  const sessionOf = (userId: number, over: Partial<NewSession> = {}): NewSession => ({
    userId,
    master: master(),
    mac: '00:11:22:33:44:55',
    ip: '192.0.2.1',
    createdAt: NOW,
    expiresAt: NOW + HOUR,
    absoluteExpiresAt: FAR,
    keyId: 1,
    ...over,
  });
  /** A session made through `s`; answers its id and master token. */
  const addSession = async (s: Store, userId: number, over: Partial<NewSession> = {}) => {
    const n = sessionOf(userId, over);
    return { id: await s.createSession(n), master: n.master, userId };
  };
  const rotationOf = (sess: { id: number; master: Buffer }, generation: number, over: Partial<Rotation> = {}): Rotation => ({
    sessionId: sess.id,
    oldMaster: sess.master,
    newMaster: master(),
    generation,
    now: NOW + MINUTE,
    expiresAt: NOW + 2 * HOUR,
    graceUntil: NOW + MINUTE + 30 * SECOND,
    nonce: Buffer.alloc(16, generation + 1),
    keyId: 2,
    oldKeyId: 1,
    ...over,
  });
  const passcodeOf = (userId: number, over: Partial<PasscodeRecord> = {}): PasscodeRecord => ({
    userId,
    hash: Buffer.alloc(32, 0x3c),
    mac: '00:11:22:33:44:55',
    seenIp: '192.0.2.1',
    reportedIp: null,
    createdAt: NOW,
    expiresAt: NOW + 10 * MINUTE,
    attempts: 0,
    keyId: 1,
    ...over,
  });

  /** deleteExpired again while any count equals the batch (as housekeeping does); every call's counts. */
  const drain = async (s: Store, now: number, policy: ExpiryPolicy): Promise<ExpiredCounts[]> => {
    const calls: ExpiredCounts[] = [];
    for (let i = 0; i < 100; i++) {
      const c = await s.deleteExpired(now, policy);
      calls.push(c);
      if (Object.values(c).every((n) => n < policy.batch)) return calls;
    }
    throw new Error(`deleteExpired still deletes a full batch after 100 calls: ${JSON.stringify(calls.at(-1))}`);
  };
  const total = (calls: ExpiredCounts[]): ExpiredCounts => ({
    passcodes: calls.reduce((a, c) => a + c.passcodes, 0),
    sessions: calls.reduce((a, c) => a + c.sessions, 0),
    retiredTokens: calls.reduce((a, c) => a + c.retiredTokens, 0),
    auditRows: calls.reduce((a, c) => a + c.auditRows, 0),
    counters: calls.reduce((a, c) => a + c.counters, 0),
  });

  t.test(`${name} store conformance`, async (t) => {
    t.jobs = factory.jobs ?? 1;
    // ----------------------------------------------------------------------------------------------
    // Identity and health
    // ----------------------------------------------------------------------------------------------

    t.test('names its backend, answers ping, and reports one schema version to every node', async (t) => {
      const store = await open(t);
      t.type(store.backend, 'string');
      t.ok(store.backend.length > 0, 'backend named');
      await store.ping();
      const version = await store.schemaVersion();
      t.ok(Number.isInteger(version) && version >= 1, `schema version ${version}`);
      const peer = await peerOf(t, store);
      t.equal(await peer.schemaVersion(), version, 'a second node on the database sees the same version');
      t.ok(await eventually(() => store.coherent && peer.coherent, SECOND), 'the change feed is trusted once open');
    });

    // ----------------------------------------------------------------------------------------------
    // Users
    // ----------------------------------------------------------------------------------------------

    t.test('creates, finds, lists, changes and deletes users', async (t) => {
      const store = await open(t);
      const b = await store.createUser({ email: 'b@example.com', phone: '+15550102', role: 'admin', passwordHash: 'hb', createdAt: NOW - 2 });
      const a = await store.createUser({ email: 'a@example.com', phone: '+15550101', role: 'user', passwordHash: 'ha', createdAt: NOW - 1 });
      t.strictSame(a, { id: a.id, email: 'a@example.com', phone: '+15550101', role: 'user', passwordHash: 'ha', disabled: false, createdAt: NOW - 1 });
      t.type(a.id, 'number');
      t.not(a.id, b.id);
      t.strictSame(await store.findUserByEmail('a@example.com'), a);
      t.strictSame(await store.findUserById(a.id), a);
      t.equal(await store.findUserByEmail('nobody@example.com'), undefined);
      t.equal(await store.findUserById(a.id + b.id + 1000), undefined);
      t.strictSame(await store.listUsers(), [b, a].sort((x, y) => x.id - y.id), 'every user, by id');

      t.equal(await store.setPasswordHash(a.id, 'ha2'), true);
      t.equal((await store.findUserById(a.id))?.passwordHash, 'ha2');
      t.equal(await store.setPasswordHash(a.id, 'ha3', 'ha'), false, 'ifCurrent no longer matches: nothing changes');
      t.equal((await store.findUserById(a.id))?.passwordHash, 'ha2');
      t.equal(await store.setPasswordHash(a.id, 'ha3', 'ha2'), true, 'ifCurrent matches');
      t.equal((await store.findUserById(a.id))?.passwordHash, 'ha3');
      t.equal(await store.setPasswordHash(a.id + b.id + 1000, 'x'), false, 'no such user');
      t.equal((await store.findUserById(b.id))?.passwordHash, 'hb', 'the other user is untouched');

      t.equal(await store.setUserDisabled(a.id, true), true);
      t.equal((await store.findUserByEmail('a@example.com'))?.disabled, true);
      t.equal(await store.setUserDisabled(a.id, true), true, 'disabling again still finds the user');
      t.equal(await store.setUserDisabled(a.id, false), true);
      t.equal((await store.findUserById(a.id))?.disabled, false);
      t.equal(await store.setUserDisabled(a.id + b.id + 1000, true), false, 'no such user');

      t.equal(await store.setUserRole(a.id, 'admin'), true);
      t.equal((await store.findUserById(a.id))?.role, 'admin');
      t.equal(await store.setUserRole(a.id + b.id + 1000, 'admin'), false, 'no such user');

      t.equal(await store.deleteUser(a.id), true);
      t.equal(await store.findUserById(a.id), undefined);
      t.equal(await store.findUserByEmail('a@example.com'), undefined);
      t.equal(await store.deleteUser(a.id), false, 'already gone');
      t.strictSame((await store.listUsers()).map((u) => u.id), [b.id]);
    });

    t.test('refuses a second user with the same email with DuplicateUserError, changing nothing', async (t) => {
      const store = await open(t);
      const first = await addUser(store, { email: 'dup@example.com' });
      const again = await attempt(() => addUser(store, { email: 'dup@example.com', role: 'admin' }));
      t.ok(!again.ok && again.error instanceof DuplicateUserError, `DuplicateUserError, got ${describe(again)}`);
      const inTx = await attempt(() => store.transaction((tx) => tx.createUser({ email: 'dup@example.com', phone: '+1', role: 'admin', passwordHash: 'h', createdAt: NOW })));
      t.ok(!inTx.ok && inTx.error instanceof DuplicateUserError, `in a transaction too, got ${describe(inTx)}`);
      t.strictSame(await store.listUsers(), [first]);
    });

    t.test('never reuses the id of a deleted user or session, even the newest', async (t) => {
      const store = await open(t);
      const u1 = await addUser(store);
      const s1 = await addSession(store, u1.id);
      const u2 = await addUser(store);
      const s2 = await addSession(store, u2.id);
      t.ok(u2.id > u1.id && s2.id > s1.id, 'ids grow');
      t.equal(await store.deleteUser(u2.id), true, 'the newest user goes, and with it the newest session');
      t.equal(await store.findSessionById(s2.id), undefined);
      const u3 = await addUser(store);
      const s3 = await addSession(store, u1.id);
      t.ok(u3.id > u2.id, `user id ${u3.id} after deleted ${u2.id}`);
      t.ok(s3.id > s2.id, `session id ${s3.id} after deleted ${s2.id}`);
      // Through housekeeping as well: a revoked session deleted when its keep time has passed.
      await store.revokeSession(s3.id, NOW - KEEP - 1, 'logout');
      t.equal((await store.deleteExpired(NOW, { idleMs: IDLE, keepRevokedMs: KEEP, batch: 10 })).sessions, 1);
      const s4 = await addSession(store, u1.id);
      t.ok(s4.id > s3.id, `session id ${s4.id} after deleted ${s3.id}`);
    });

    // ----------------------------------------------------------------------------------------------
    // Passcodes
    // ----------------------------------------------------------------------------------------------

    t.test('stores, replaces, counts, updates and deletes pending passcodes', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      t.equal(await store.getPasscode(u.id), undefined);
      const p1 = passcodeOf(u.id, { hash: Buffer.from('0102030405', 'hex'), reportedIp: '10.0.0.7', keyId: 3 });
      await store.putPasscode(p1);
      t.strictSame(await store.getPasscode(u.id), p1, 'round trip, every field');
      const p2 = passcodeOf(u.id, { hash: Buffer.alloc(32, 9), mac: 'aa:bb:cc:dd:ee:ff', seenIp: '198.51.100.2', reportedIp: null, createdAt: NOW + 1, expiresAt: NOW + 5 * MINUTE, attempts: 0, keyId: 1 });
      await store.putPasscode(p2);
      t.strictSame(await store.getPasscode(u.id), p2, 'a second one replaces the first');

      await store.setPasscodeAttempts(u.id, 2);
      t.equal((await store.getPasscode(u.id))?.attempts, 2);

      await store.putPasscode(passcodeOf(v.id, { expiresAt: NOW }));
      t.equal(await store.countPendingPasscodes(NOW - 1), 2);
      t.equal(await store.countPendingPasscodes(NOW), 1, 'one expiring exactly now is no longer pending');
      t.equal(await store.countPendingPasscodes(NOW + 5 * MINUTE), 0);

      await store.deletePasscode(u.id);
      t.equal(await store.getPasscode(u.id), undefined);
      t.ok(await store.getPasscode(v.id), "the other user's stays");
      await store.deletePasscode(u.id); // nothing to delete: no error
    });

    // ----------------------------------------------------------------------------------------------
    // Sessions
    // ----------------------------------------------------------------------------------------------

    t.test('creates sessions and finds them by master token and by id, with the owner joined', async (t) => {
      const store = await open(t);
      const u = await addUser(store, { email: 'owner@example.com', role: 'admin' });
      const n = sessionOf(u.id, { createdAt: NOW - 5, expiresAt: NOW + HOUR, absoluteExpiresAt: FAR, keyId: 4 });
      const id = await store.createSession(n);
      t.type(id, 'number');
      const expected = {
        id,
        userId: u.id,
        master: n.master,
        mac: n.mac,
        ip: n.ip,
        createdAt: NOW - 5,
        expiresAt: NOW + HOUR,
        absoluteExpiresAt: FAR,
        keyId: 4,
        device: null,
        scope: 'full',
        lastSeenAt: NOW - 5,
        generation: 0,
        revokedAt: null,
        revokeReason: null,
        userEmail: 'owner@example.com',
        userRole: 'admin',
        userDisabled: false,
      };
      t.strictSame(await store.findSessionByMaster(n.master), expected, 'by master: every field, device null when not given');
      t.strictSame(await store.findSessionById(id), expected, 'by id');
      t.equal(await store.findSessionByMaster(master()), undefined);
      t.equal(await store.findSessionById(id + 1000), undefined);

      const withDevice = sessionOf(u.id, { device: 'laptop ✓' });
      const id2 = await store.createSession(withDevice);
      t.equal((await store.findSessionById(id2))?.device, 'laptop ✓');

      await store.setUserRole(u.id, 'user');
      await store.setUserDisabled(u.id, true);
      const after = await store.findSessionByMaster(n.master);
      t.equal(after?.userRole, 'user', "the owner's role as it is now");
      t.equal(after?.userDisabled, true, "the owner's disabled flag as it is now");
    });

    t.test('rotates a session once: the new master replaces the old, which is retired with both key ids and the nonce', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const s = await addSession(store, u.id, { keyId: 1 });
      const r = rotationOf(s, 0, { keyId: 2, oldKeyId: 1, nonce: Buffer.alloc(16, 0x42) });
      t.equal(await store.rotateSession(r), true);
      const now = await store.findSessionByMaster(r.newMaster);
      t.equal(now?.id, s.id);
      t.equal(now?.generation, 1);
      t.equal(now?.keyId, 2, 'made with the rotation key');
      t.equal(now?.expiresAt, r.expiresAt);
      t.equal(now?.lastSeenAt, r.now, 'a renewal is activity');
      t.equal(now?.absoluteExpiresAt, FAR, 'the absolute limit does not move');
      t.equal(await store.findSessionByMaster(s.master), undefined, 'the old master no longer finds the session');
      t.strictSame(await store.findRetiredToken(s.master), {
        master: s.master,
        sessionId: s.id,
        generation: 0,
        retiredAt: r.now,
        graceUntil: r.graceUntil,
        nonce: Buffer.alloc(16, 0x42),
        keyId: 1,
        rotateKeyId: 2,
      });
      t.equal(await store.findRetiredToken(r.newMaster), undefined, 'the current master is not retired');

      t.equal(await store.rotateSession(rotationOf(s, 0)), false, 'the same rotation again (stale master and generation)');
      const staleGeneration = rotationOf({ id: s.id, master: r.newMaster }, 0);
      t.equal(await store.rotateSession(staleGeneration), false, 'current master, stale generation');
      const staleMaster = rotationOf({ id: s.id, master: master() }, 1);
      t.equal(await store.rotateSession(staleMaster), false, 'current generation, a master that is not the current one');
      t.equal(await store.findRetiredToken(staleMaster.oldMaster), undefined, 'a refused rotation retires nothing');
      const unchanged = await store.findSessionById(s.id);
      t.equal(unchanged?.generation, 1, 'refused rotations change nothing');
      t.strictSame(unchanged?.master, r.newMaster);

      const r2 = rotationOf({ id: s.id, master: r.newMaster }, 1, { now: NOW + 2 * MINUTE });
      t.equal(await store.rotateSession(r2), true, 'the current master and generation rotate again');
      t.equal((await store.findRetiredToken(r.newMaster))?.generation, 1);
      t.equal((await store.findRetiredToken(s.master))?.sessionId, s.id, 'earlier retired tokens are kept');

      t.equal(await store.revokeSession(s.id, NOW + 3 * MINUTE, 'logout'), true);
      t.equal(await store.rotateSession(rotationOf({ id: s.id, master: r2.newMaster }, 2)), false, 'a revoked session never rotates');
      t.equal((await store.findSessionById(s.id))?.generation, 2);
    });

    t.test('touches, and revokes once (a second revocation answers false and keeps the first)', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const s = await addSession(store, u.id);
      t.equal(await store.touchSession(s.id, NOW + 5 * MINUTE), true);
      t.equal((await store.findSessionByMaster(s.master))?.lastSeenAt, NOW + 5 * MINUTE);
      t.equal(await store.revokeSession(s.id, NOW + 6 * MINUTE, 'logout'), true);
      const revoked = await store.findSessionById(s.id);
      t.equal(revoked?.revokedAt, NOW + 6 * MINUTE);
      t.equal(revoked?.revokeReason, 'logout');
      t.equal(await store.revokeSession(s.id, NOW + 7 * MINUTE, 'admin'), false, 'already revoked');
      const still = await store.findSessionByMaster(s.master);
      t.equal(still?.revokedAt, NOW + 6 * MINUTE, 'the first revocation stands');
      t.equal(still?.revokeReason, 'logout');
      t.equal(await store.revokeSession(s.id + 1000, NOW, 'logout'), false, 'no such session');
    });

    t.test("revokes every open session of one user, and only theirs", async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const other = await addUser(store);
      const a = await addSession(store, u.id);
      const b = await addSession(store, u.id, { expiresAt: NOW - HOUR, absoluteExpiresAt: NOW - 1 });
      const earlier = await addSession(store, u.id);
      await store.revokeSession(earlier.id, NOW - 1, 'logout');
      const theirs = await addSession(store, other.id);
      t.equal(await store.revokeUserSessions(u.id, NOW, 'admin-disable'), 2, 'open ones, past their limits or not');
      for (const s of [a, b]) {
        const r = await store.findSessionById(s.id);
        t.equal(r?.revokedAt, NOW);
        t.equal(r?.revokeReason, 'admin-disable');
      }
      const e = await store.findSessionById(earlier.id);
      t.equal(e?.revokedAt, NOW - 1, 'an earlier revocation stands');
      t.equal(e?.revokeReason, 'logout');
      t.equal((await store.findSessionById(theirs.id))?.revokedAt, null, "another user's session is untouched");
      t.equal(await store.revokeUserSessions(u.id, NOW + 1, 'again'), 0);
      t.equal(await store.revokeUserSessions(u.id + other.id + 1000, NOW, 'x'), 0, 'no such user');
    });

    t.test('lists open sessions by creation, oldest first, per user and for everyone', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      await store.setUserDisabled(v.id, true);
      // Inserted out of creation order, so an order by id would differ.
      const middle = await addSession(store, u.id, { createdAt: NOW - 20 });
      const oldest = await addSession(store, u.id, { createdAt: NOW - 30, expiresAt: NOW - 25, absoluteExpiresAt: NOW - 21 });
      const revoked = await addSession(store, u.id, { createdAt: NOW - 25 });
      await store.revokeSession(revoked.id, NOW, 'logout');
      const newest = await addSession(store, u.id, { createdAt: NOW - 10 });
      const vs = await addSession(store, v.id, { createdAt: NOW - 15 });

      const mine = await store.listOpenSessions(u.id);
      t.strictSame(mine.map((s) => s.id), [oldest.id, middle.id, newest.id], 'not revoked, past their limits included, oldest first');
      t.equal(mine[0]?.userId, u.id);
      t.strictSame(mine[0]?.master, oldest.master, 'whole records');
      t.strictSame((await store.listOpenSessions(v.id)).map((s) => s.id), [vs.id]);
      t.strictSame(await store.listOpenSessions(u.id + v.id + 1000), []);
      const all = await store.listAllOpenSessions();
      t.strictSame(all.map((s) => s.id), [oldest.id, middle.id, vs.id, newest.id], 'every user, oldest first, a disabled owner\'s too');
      t.equal(all.find((s) => s.id === vs.id)?.userDisabled, true);
    });

    t.test('counts live sessions by each of the bounds it is given', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const off = await addUser(store);
      const bounds: LiveBounds = { currentAfter: NOW, renewableAfter: { absolute: NOW, lastSeen: NOW - IDLE } };
      await addSession(store, u.id, { createdAt: NOW - 1, expiresAt: NOW + 1 }); // current
      await addSession(store, u.id, { createdAt: NOW - IDLE + 1, expiresAt: NOW, absoluteExpiresAt: NOW + 1 }); // renewable
      await addSession(store, u.id, { createdAt: NOW, expiresAt: NOW, absoluteExpiresAt: NOW }); // at both limits
      await addSession(store, u.id, { createdAt: NOW - IDLE, expiresAt: NOW, absoluteExpiresAt: FAR }); // idle exactly
      const revoked = await addSession(store, u.id, { expiresAt: NOW + HOUR });
      await store.revokeSession(revoked.id, NOW, 'logout');
      await addSession(store, off.id, { expiresAt: NOW + HOUR });
      await store.setUserDisabled(off.id, true);

      t.equal(await store.countLiveSessions(bounds), 2, 'current, or inside both renewal bounds; bounds exclusive');
      t.equal(await store.countLiveSessions({ ...bounds, currentAfter: NOW - 1 }), 4, 'currentAfter: tokens expiring at NOW count');
      t.equal(await store.countLiveSessions({ ...bounds, renewableAfter: { absolute: NOW - 1, lastSeen: NOW - IDLE } }), 3, 'renewableAfter.absolute');
      t.equal(await store.countLiveSessions({ ...bounds, renewableAfter: { absolute: NOW, lastSeen: NOW - IDLE - 1 } }), 3, 'renewableAfter.lastSeen');
      t.equal(await store.countLiveSessions({ currentAfter: FAR, renewableAfter: { absolute: FAR, lastSeen: FAR } }), 0);
      await store.setUserDisabled(off.id, false);
      t.equal(await store.countLiveSessions(bounds), 3, "an enabled owner's session counts");
    });

    t.test('counts open sessions per owner, inside the bounds and not, without loading them', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      const off = await addUser(store);
      const idle = await addUser(store);
      const bounds: LiveBounds = { currentAfter: NOW, renewableAfter: { absolute: NOW, lastSeen: NOW - IDLE } };
      await addSession(store, u.id, { createdAt: NOW - 1, expiresAt: NOW + 1 }); // current
      await addSession(store, u.id, { createdAt: NOW - IDLE + 1, expiresAt: NOW, absoluteExpiresAt: NOW + 1 }); // renewable
      await addSession(store, u.id, { createdAt: NOW, expiresAt: NOW, absoluteExpiresAt: NOW }); // at both limits: inactive
      await addSession(store, v.id, { expiresAt: NOW + HOUR });
      const revoked = await addSession(store, v.id, { expiresAt: NOW + HOUR });
      await store.revokeSession(revoked.id, NOW, 'logout'); // not open: in neither count
      await addSession(store, off.id, { expiresAt: NOW + HOUR });
      await store.setUserDisabled(off.id, true); // a disabled owner's: in neither count
      await addSession(store, idle.id, { createdAt: NOW - IDLE, expiresAt: NOW, absoluteExpiresAt: FAR }); // idle exactly: inactive

      const counts = await store.sessionCounts(bounds);
      t.strictSame(Object.fromEntries(counts.activeByUser), { [u.email]: 2, [v.email]: 1 }, 'owners with none are absent');
      t.equal(counts.inactive, 2);
      t.equal([...counts.activeByUser.values()].reduce((a, b) => a + b, 0), await store.countLiveSessions(bounds), 'agrees with countLiveSessions');
      await store.setUserDisabled(off.id, false);
      t.equal((await store.sessionCounts(bounds)).activeByUser.get(off.email), 1, "an enabled owner's session counts");
      t.strictSame(await store.transaction((tx) => tx.sessionCounts(bounds)), await store.sessionCounts(bounds), 'the same inside a transaction');
      const none = await store.sessionCounts({ currentAfter: FAR, renewableAfter: { absolute: FAR, lastSeen: FAR } });
      t.equal(none.activeByUser.size, 0);
      t.equal(none.inactive, 6);
    });

    t.test('counts sessions by server key, and revokes sessions and passcodes of a retired key', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      const w = await addUser(store);
      const k1a = await addSession(store, u.id, { keyId: 1 });
      const k1b = await addSession(store, v.id, { keyId: 1, expiresAt: NOW - 1 }); // expired token, inside absolute: counts
      await addSession(store, u.id, { keyId: 1, absoluteExpiresAt: NOW }); // at its absolute limit: does not
      const k1revoked = await addSession(store, u.id, { keyId: 1 });
      await store.revokeSession(k1revoked.id, NOW - 5, 'logout');
      const k2 = await addSession(store, u.id, { keyId: 2 });
      const sorted = (m: Map<number, number>) => [...m.entries()].sort((a, b) => a[0] - b[0]);
      t.strictSame(sorted(await store.countSessionsByKey(NOW)), [[1, 2], [2, 1]]);

      await store.putPasscode(passcodeOf(u.id, { keyId: 1 }));
      await store.putPasscode(passcodeOf(v.id, { keyId: 2 }));
      await store.putPasscode(passcodeOf(w.id, { keyId: 1 }));
      t.strictSame(await store.revokeByKey(1, NOW + 1, 'key-retired'), { sessions: 3, passcodes: 2 });
      for (const s of [k1a, k1b]) {
        const r = await store.findSessionById(s.id);
        t.equal(r?.revokedAt, NOW + 1);
        t.equal(r?.revokeReason, 'key-retired');
      }
      t.equal((await store.findSessionById(k1revoked.id))?.revokeReason, 'logout', 'an earlier revocation stands');
      t.equal((await store.findSessionById(k2.id))?.revokedAt, null, "another key's session stays");
      t.equal(await store.getPasscode(u.id), undefined);
      t.equal(await store.getPasscode(w.id), undefined);
      t.equal((await store.getPasscode(v.id))?.keyId, 2, "another key's passcode stays");
      t.strictSame(sorted(await store.countSessionsByKey(NOW + 1)), [[2, 1]]);
      t.strictSame(await store.revokeByKey(1, NOW + 2, 'key-retired'), { sessions: 0, passcodes: 0 });
    });

    t.test('deletes a user with their sessions, retired tokens and passcode, and nobody else\'s', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      const s = await addSession(store, u.id);
      const r = rotationOf(s, 0);
      await store.rotateSession(r);
      await store.putPasscode(passcodeOf(u.id));
      const vs = await addSession(store, v.id);
      await store.putPasscode(passcodeOf(v.id));
      await store.appendAudit([{ at: NOW, action: 'login', outcome: 'success', userId: u.id, sessionId: s.id }]);

      t.equal(await store.deleteUser(u.id), true);
      t.equal(await store.findSessionById(s.id), undefined);
      t.equal(await store.findSessionByMaster(r.newMaster), undefined);
      t.equal(await store.findRetiredToken(s.master), undefined, 'retired tokens go with their session');
      t.equal(await store.getPasscode(u.id), undefined);
      t.strictSame(await store.listOpenSessions(u.id), []);
      t.equal((await store.findSessionById(vs.id))?.userId, v.id);
      t.ok(await store.getPasscode(v.id));
      t.equal((await store.queryAudit({ limit: 10 })).length, 1, 'the audit trail outlives the account');
    });

    // ----------------------------------------------------------------------------------------------
    // Audit
    // ----------------------------------------------------------------------------------------------

    t.test('appends audit events and queries them by every filter, newest first, page by page', async (t) => {
      const store = await open(t);
      const detail = { text: 'naïve ✓ "quoted"', n: 3, neg: -2.5, big: 2 ** 40, yes: true, no: false, none: null };
      const events: AuditEvent[] = [
        { at: NOW - 7000, action: 'passcode.request', outcome: 'success', userId: 1, email: 'a@example.com', ip: '192.0.2.1', mac: '00:11:22:33:44:55' },
        { at: NOW - 6000, action: 'login', outcome: 'failure', email: 'nobody@example.com', ip: '192.0.2.9', detail: { reason: 'unknown-account' } },
        { at: NOW - 5000, action: 'login', outcome: 'success', userId: 1, email: 'a@example.com', sessionId: 7, detail },
        { at: NOW - 4000, action: 'admin.user.disable', outcome: 'success', userId: 2, email: 'b@example.com', actor: 'cli:root' },
        { at: NOW - 3000, action: 'administrator', outcome: 'success', email: 'a@example.com' },
        { at: NOW - 2000, action: 'x_y.one', outcome: 'denied', email: 'a@example.com', actor: 'admin:c@example.com' },
        { at: NOW - 1000, action: 'xzy.two', outcome: 'denied' },
        { at: NOW, action: 'x%y.three', outcome: 'success', userId: 1, email: 'a@example.com', detail: {} },
      ];
      await store.appendAudit(events.slice(0, 5));
      await store.appendAudit([]);
      await store.appendAudit(events.slice(5));
      const actions = async (q: Omit<AuditQuery, 'limit'> & { limit?: number }) => (await store.queryAudit({ limit: 100, ...q })).map((r) => r.action);

      const all = await store.queryAudit({ limit: 100 });
      t.strictSame(all.map((r) => r.at), events.map((e) => e.at).reverse(), 'newest first');
      t.ok(all.every((r, i) => i === 0 || r.id < all[i - 1]!.id), 'ids fall from newest to oldest');
      t.strictSame(all.at(-1), {
        id: all.at(-1)!.id,
        at: NOW - 7000,
        action: 'passcode.request',
        outcome: 'success',
        userId: 1,
        email: 'a@example.com',
        actor: null,
        ip: '192.0.2.1',
        mac: '00:11:22:33:44:55',
        sessionId: null,
        detail: null,
      }, 'absent fields are null');
      t.strictSame(all.find((r) => r.action === 'login' && r.outcome === 'success')?.detail, detail, 'detail round trip');
      t.strictSame(all[0]?.detail, {}, 'an empty detail stays an empty object');
      t.equal(all.find((r) => r.action === 'admin.user.disable')?.actor, 'cli:root');

      t.strictSame(await actions({ email: 'a@example.com' }), ['x%y.three', 'x_y.one', 'administrator', 'login', 'passcode.request']);
      t.strictSame(await actions({ action: 'login' }), ['login', 'login']);
      t.strictSame(await actions({ actor: 'admin:c@example.com' }), ['x_y.one'], 'by actor, exactly');
      t.strictSame(await actions({ actor: 'admin:' }), [], 'an actor is matched whole, not as a prefix');
      t.strictSame(await actions({ action: 'admin.*' }), ['admin.user.disable'], 'a prefix up to and including the dot');
      t.strictSame(await actions({ action: 'admin*' }), ['administrator', 'admin.user.disable']);
      t.strictSame(await actions({ action: 'x_y.*' }), ['x_y.one'], 'the prefix is literal: _ is no wildcard');
      t.strictSame(await actions({ action: 'x%y.*' }), ['x%y.three'], 'the prefix is literal: % is no wildcard');
      t.strictSame(await actions({ action: 'admin' }), [], 'without * the name is exact');
      t.strictSame(await actions({ outcome: 'denied' }), ['xzy.two', 'x_y.one']);
      t.strictSame(await actions({ since: NOW - 2000 }), ['x%y.three', 'xzy.two', 'x_y.one'], 'since is inclusive');
      t.strictSame(await actions({ until: NOW - 5000 }), ['login', 'passcode.request'], 'until is exclusive');
      t.strictSame(await actions({ since: NOW - 6000, until: NOW - 4000 }), ['login', 'login']);
      t.strictSame(await actions({ email: 'a@example.com', outcome: 'success', action: 'login' }), ['login'], 'filters combine');
      t.strictSame(await actions({ limit: 3 }), ['x%y.three', 'xzy.two', 'x_y.one'], 'at most limit');

      const pages: string[][] = [];
      let beforeId: number | undefined;
      for (;;) {
        const page = await store.queryAudit({ limit: 3, ...(beforeId === undefined ? {} : { beforeId }) });
        if (page.length === 0) break;
        pages.push(page.map((r) => r.action));
        beforeId = page.at(-1)!.id;
      }
      t.strictSame(pages.flat(), all.map((r) => r.action), 'pages by beforeId cover everything once, in order');
      t.equal(pages.length, 3);
      const aPage = await store.queryAudit({ email: 'a@example.com', limit: 2 });
      t.strictSame(await actions({ email: 'a@example.com', beforeId: aPage.at(-1)!.id }), ['administrator', 'login', 'passcode.request'], 'beforeId with a filter');
    });

    // ----------------------------------------------------------------------------------------------
    // Counters
    // ----------------------------------------------------------------------------------------------

    t.test('counts hits, reads in the order asked, blocks, clears, and starts over after expiry', async (t) => {
      const store = await open(t);
      t.strictSame(await store.hitCounters(['a', 'b'], NOW, NOW + MINUTE), [
        { count: 1, until: 0, expiresAt: NOW + MINUTE },
        { count: 1, until: 0, expiresAt: NOW + MINUTE },
      ]);
      t.strictSame(await store.hitCounters(['a'], NOW + 1, NOW + 30 * SECOND), [{ count: 2, until: 0, expiresAt: NOW + MINUTE }], 'the expiry never falls');
      t.strictSame(await store.hitCounters(['a'], NOW + 2, NOW + 90 * SECOND), [{ count: 3, until: 0, expiresAt: NOW + 90 * SECOND }], 'it rises');
      t.strictSame(await store.readCounters(['b', 'missing', 'a'], NOW + 3), [
        { count: 1, until: 0, expiresAt: NOW + MINUTE },
        undefined,
        { count: 3, until: 0, expiresAt: NOW + 90 * SECOND },
      ]);

      await store.blockCounter('a', NOW + 2 * MINUTE);
      const blocked = (await store.readCounters(['a'], NOW + 4))[0];
      t.equal(blocked?.count, 3);
      t.equal(blocked?.until, NOW + 2 * MINUTE);
      t.ok((blocked?.expiresAt ?? 0) >= NOW + 2 * MINUTE, 'kept at least as long as it blocks');
      await store.blockCounter('a', NOW + MINUTE);
      t.equal((await store.readCounters(['a'], NOW + 5))[0]?.until, NOW + 2 * MINUTE, 'a block is only ever raised');

      t.strictSame(await store.readCounters(['b'], NOW + MINUTE + 1), [undefined], 'expired: as if none');
      t.strictSame(await store.hitCounters(['b', 'a'], NOW + MINUTE + 1, NOW + 3 * MINUTE), [
        { count: 1, until: 0, expiresAt: NOW + 3 * MINUTE },
        { count: 4, until: NOW + 2 * MINUTE, expiresAt: NOW + 3 * MINUTE },
      ], 'an expired counter starts over at 1; a live one goes on');

      await store.clearCounters(['a', 'missing']);
      t.strictSame(await store.readCounters(['a', 'b'], NOW + MINUTE + 2), [undefined, { count: 1, until: 0, expiresAt: NOW + 3 * MINUTE }]);
      t.strictSame(await store.hitCounters(['a'], NOW + MINUTE + 3, NOW + 2 * MINUTE), [{ count: 1, until: 0, expiresAt: NOW + 2 * MINUTE }], 'a cleared counter starts over');
    });

    t.test('records running nodes with their signing key, lists those seen lately, forgets one', async (t) => {
      const store = await open(t);
      await store.recordNode({ id: 'b:2', currentKeyId: 1, seenAt: NOW });
      await store.recordNode({ id: 'a:1', currentKeyId: 1, seenAt: NOW - HOUR });
      await store.recordNode({ id: 'b:2', currentKeyId: 2, seenAt: NOW + 1 });
      t.strictSame(await store.listNodes(NOW - 2 * HOUR), [
        { id: 'a:1', currentKeyId: 1, seenAt: NOW - HOUR },
        { id: 'b:2', currentKeyId: 2, seenAt: NOW + 1 },
      ], 'by id, the latest record of each');
      t.strictSame(await store.listNodes(NOW), [{ id: 'b:2', currentKeyId: 2, seenAt: NOW + 1 }], 'only those seen since');
      await store.forgetNode('b:2');
      t.strictSame(await store.listNodes(NOW), []);
    });

    // ----------------------------------------------------------------------------------------------
    // Known devices
    // ----------------------------------------------------------------------------------------------

    t.test('records logins by device and address group, telling which was new', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const login = { userId: u.id, mac: '00:11:22:33:44:55', ip: '192.0.2.1', addressGroup: '192.0.2.1', name: 'laptop', at: NOW };
      t.strictSame(await store.recordDeviceLogin(login), { newDevice: true, newAddress: true }, 'the first login: both new');
      t.strictSame(await store.recordDeviceLogin({ ...login, name: 'other', ip: '192.0.2.1', at: NOW + HOUR }), { newDevice: false, newAddress: false });
      t.strictSame(await store.getDevice(u.id, login.mac), {
        userId: u.id,
        mac: login.mac,
        name: 'laptop',
        firstSeenAt: NOW,
        lastSeenAt: NOW + HOUR,
        lastIp: '192.0.2.1',
        registeredAt: null,
        registeredBy: null,
      }, 'last use moved; the first name stays');
      t.strictSame(await store.recordDeviceLogin({ ...login, mac: '00:11:22:33:44:00', name: null }), { newDevice: true, newAddress: false });
      t.strictSame(await store.recordDeviceLogin({ ...login, ip: '2001:db8::1', addressGroup: '2001:db8::/64' }), { newDevice: false, newAddress: true });
      t.strictSame(await store.recordDeviceLogin({ ...login, ip: '2001:db8::2', addressGroup: '2001:db8::/64', at: NOW - DAY }), { newDevice: false, newAddress: false });
      t.match(await store.getDevice(u.id, login.mac), { lastSeenAt: NOW + HOUR, lastIp: '2001:db8::2' }, 'an older time does not move last use back');
      t.strictSame((await store.listDevices(u.id)).map((d) => [d.mac, d.name]), [['00:11:22:33:44:00', null], ['00:11:22:33:44:55', 'laptop']], 'by MAC');
      const other = await addUser(store);
      t.strictSame(await store.listDevices(other.id), [], "another user's list is their own");
      t.strictSame(await store.recordDeviceLogin({ ...login, userId: other.id }), { newDevice: true, newAddress: true }, 'devices and addresses are per user');
      t.equal(await store.getDevice(u.id, '00:11:22:33:44:99'), undefined);
    });

    t.test('registers, renames and deletes devices; a registered device never used is new at its first login', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const mac = '00:11:22:33:44:66';
      t.strictSame(await store.registerDevice(u.id, mac, 'desk', NOW, 'admin:root@example.com'), {
        userId: u.id,
        mac,
        name: 'desk',
        firstSeenAt: null,
        lastSeenAt: null,
        lastIp: null,
        registeredAt: NOW,
        registeredBy: 'admin:root@example.com',
      });
      const login = { userId: u.id, mac, ip: '192.0.2.1', addressGroup: '192.0.2.1', name: 'laptop', at: NOW + MINUTE };
      t.strictSame(await store.recordDeviceLogin(login), { newDevice: true, newAddress: true });
      t.strictSame(await store.recordDeviceLogin(login), { newDevice: false, newAddress: false });
      t.match(await store.getDevice(u.id, mac), { name: 'desk', firstSeenAt: NOW + MINUTE, registeredAt: NOW }, 'the given name stays');
      // Registering a device already seen keeps its history; no name keeps the name it has.
      await store.recordDeviceLogin({ ...login, mac: '00:11:22:33:44:77', name: 'phone' });
      t.match(await store.registerDevice(u.id, '00:11:22:33:44:77', null, NOW + HOUR, 'recovery'), {
        name: 'phone',
        firstSeenAt: NOW + MINUTE,
        registeredAt: NOW + HOUR,
        registeredBy: 'recovery',
      });
      t.equal(await store.renameDevice(u.id, mac, 'renamed'), true);
      t.equal((await store.getDevice(u.id, mac))!.name, 'renamed');
      t.equal(await store.renameDevice(u.id, mac, null), true);
      t.equal((await store.getDevice(u.id, mac))!.name, null);
      t.equal(await store.renameDevice(u.id, '00:11:22:33:44:99', 'x'), false, 'no such device');
      t.equal(await store.deleteDevice(u.id, mac), true);
      t.equal(await store.deleteDevice(u.id, mac), false, 'once');
      t.strictSame((await store.listDevices(u.id)).map((d) => d.mac), ['00:11:22:33:44:77']);
      t.strictSame(await store.recordDeviceLogin(login), { newDevice: true, newAddress: false }, 'a deleted device is new again; its address is still known');
    });

    t.test("deleting a user deletes its devices; a transaction's device writes roll back with it", async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      await store.recordDeviceLogin({ userId: u.id, mac: '00:11:22:33:44:55', ip: '192.0.2.1', addressGroup: '192.0.2.1', name: null, at: NOW });
      await store.registerDevice(u.id, '00:11:22:33:44:66', null, NOW, 'cli:root');
      await t.rejects(
        store.transaction(async (tx) => {
          await tx.registerDevice(u.id, '00:11:22:33:44:88', 'x', NOW, 'cli:root');
          t.ok(await tx.getDevice(u.id, '00:11:22:33:44:88'), 'seen inside');
          throw new Error('abort');
        }),
        { message: 'abort' },
      );
      t.equal(await store.getDevice(u.id, '00:11:22:33:44:88'), undefined, 'rolled back');
      t.equal(await store.deleteUser(u.id), true);
      t.strictSame(await store.listDevices(u.id), []);
    });

    t.test('of two nodes recording the same new device and address at once, exactly one is told it is new', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      const u = await addUser(a);
      for (const mac of ['00:11:22:33:44:01', '00:11:22:33:44:02', '00:11:22:33:44:03']) {
        const group = `198.51.100.${mac.slice(-1)}`;
        const login = { userId: u.id, mac, ip: group, addressGroup: group, name: null, at: NOW };
        const results = await Promise.all([a, b, a, b].map((s) => attempt(() => s.recordDeviceLogin(login))));
        const ok = results.filter((r): r is { ok: true; value: { newDevice: boolean; newAddress: boolean } } => r.ok).map((r) => r.value);
        t.ok(results.every((r) => r.ok || (factory.busyUnderContention && isBusy(r))), 'each answered (or busy where that may happen)');
        t.equal(ok.filter((v) => v.newDevice).length, 1, `${mac}: one new device`);
        t.equal(ok.filter((v) => v.newAddress).length, 1, `${mac}: one new address`);
      }
      // A registered device's first use, raced: the same.
      await a.registerDevice(u.id, '00:11:22:33:44:09', null, NOW, 'cli:root');
      const first = { userId: u.id, mac: '00:11:22:33:44:09', ip: '198.51.100.1', addressGroup: '198.51.100.1', name: null, at: NOW };
      const raced = await Promise.all([a, b].map((s) => attempt(() => s.recordDeviceLogin(first))));
      t.equal(raced.filter((r) => r.ok && r.value.newDevice).length, 1);
    });

    // ----------------------------------------------------------------------------------------------
    // Second factors (issue 13): factor state, sealed secrets, recovery codes and passcodes
    // ----------------------------------------------------------------------------------------------

    t.test('stores, replaces and deletes factor rows; a step is used once and only forwards', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const other = await addUser(store);
      t.strictSame(await store.listFactors(u.id), []);
      const row = { userId: u.id, factor: 'totp', confirmedAt: null, mustEnroll: true, lastStep: 0, createdAt: NOW };
      await store.putFactor(row);
      await store.putFactor({ ...row, factor: 'face', mustEnroll: false });
      await store.putFactor({ ...row, userId: other.id });
      t.strictSame(await store.listFactors(u.id), [{ ...row, factor: 'face', mustEnroll: false }, row], 'by factor name');
      await store.putFactor({ ...row, confirmedAt: NOW + 1, mustEnroll: false, lastStep: 5 });
      t.strictSame((await store.listFactors(u.id))[1], { ...row, confirmedAt: NOW + 1, mustEnroll: false, lastStep: 5 }, 'replaced');
      t.equal(await store.useFactorStep(u.id, 'totp', 5), false, 'the step already used');
      t.equal(await store.useFactorStep(u.id, 'totp', 4), false, 'an older step');
      t.equal(await store.useFactorStep(u.id, 'totp', 57_000_000_000), true, 'a newer step (beyond 2^32)');
      t.equal((await store.listFactors(u.id))[1]!.lastStep, 57_000_000_000);
      t.equal(await store.useFactorStep(u.id, 'none', 9), false, 'no such factor');
      t.equal(await store.deleteFactor(u.id, 'face'), true);
      t.equal(await store.deleteFactor(u.id, 'face'), false);
      t.equal((await store.listFactors(other.id)).length, 1, 'another user\'s row untouched');
    });

    t.test('of two nodes using the same step at once, exactly one succeeds', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      const u = await addUser(a);
      await a.putFactor({ userId: u.id, factor: 'totp', confirmedAt: NOW, mustEnroll: false, lastStep: 0, createdAt: NOW });
      for (const step of [100, 101, 102]) {
        const results = await Promise.all([a, b, a, b].map((s) => attempt(() => s.transaction((tx) => tx.useFactorStep(u.id, 'totp', step)))));
        t.equal(results.filter((r) => r.ok && r.value === true).length, 1, `step ${step}: one winner`);
        t.ok(results.every((r) => r.ok || (factory.busyUnderContention && isBusy(r))), 'the others lose fairly');
      }
    });

    t.test('stores sealed secrets per user and kind, lists them by key and re-seals only from the key named', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      const secret = (userId: number, kind: string, keyId: number, fill: number) => ({ userId, kind, keyId, sealed: Buffer.alloc(45, fill), updatedAt: NOW });
      await store.putSecret(secret(u.id, 'totp', 1, 1));
      await store.putSecret(secret(u.id, 'recovery', 1, 2));
      await store.putSecret(secret(v.id, 'totp', 2, 3));
      t.strictSame(await store.getSecret(u.id, 'totp'), secret(u.id, 'totp', 1, 1));
      t.equal(await store.getSecret(u.id, 'face'), undefined);
      t.strictSame((await store.listSecretsByKey(1, 10)).map((s) => [s.userId, s.kind]), [[u.id, 'recovery'], [u.id, 'totp']]);
      t.equal((await store.listSecretsByKey(1, 1)).length, 1, 'at most the limit');
      t.equal(await store.resealSecret(u.id, 'totp', 2, secret(u.id, 'totp', 3, 9)), false, 'not under that key: unchanged');
      t.equal(await store.resealSecret(u.id, 'totp', 1, secret(u.id, 'totp', 3, 9)), true);
      t.strictSame(await store.getSecret(u.id, 'totp'), secret(u.id, 'totp', 3, 9));
      await store.putSecret(secret(u.id, 'totp', 4, 7));
      t.strictSame(await store.getSecret(u.id, 'totp'), secret(u.id, 'totp', 4, 7), 'replaced');
      t.equal(await store.deleteSecret(u.id, 'totp'), true);
      t.equal(await store.deleteSecret(u.id, 'totp'), false);
      t.ok(await store.getSecret(v.id, 'totp'), 'another user\'s secret untouched');
    });

    t.test('replaces recovery codes as a set; each is used once', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const v = await addUser(store);
      const hashes = [1, 2, 3].map((n) => Buffer.alloc(32, n));
      await store.putRecoveryCodes(u.id, hashes, NOW);
      await store.putRecoveryCodes(v.id, [Buffer.alloc(32, 1)], NOW);
      t.equal(await store.countRecoveryCodes(u.id), 3);
      t.equal(await store.useRecoveryCode(u.id, hashes[1]!), true);
      t.equal(await store.useRecoveryCode(u.id, hashes[1]!), false, 'not twice');
      t.equal(await store.useRecoveryCode(u.id, Buffer.alloc(32, 9)), false, 'not an unknown one');
      t.equal(await store.countRecoveryCodes(u.id), 2);
      await store.putRecoveryCodes(u.id, [Buffer.alloc(32, 7)], NOW);
      t.equal(await store.countRecoveryCodes(u.id), 1, 'a new set voids the old');
      t.equal(await store.useRecoveryCode(u.id, hashes[0]!), false);
      await store.putRecoveryCodes(u.id, [], NOW);
      t.equal(await store.countRecoveryCodes(u.id), 0, 'an empty set deletes them all');
      t.equal(await store.countRecoveryCodes(v.id), 1, 'another user\'s codes untouched');
      const a = await peerOf(t, store);
      await store.putRecoveryCodes(u.id, [Buffer.alloc(32, 5)], NOW);
      const raced = await Promise.all([store, a, store, a].map((s) => attempt(() => s.useRecoveryCode(u.id, Buffer.alloc(32, 5)))));
      t.equal(raced.filter((r) => r.ok && r.value === true).length, 1, 'of racing nodes, one uses it');
    });

    t.test('stores recovery passcodes apart from login passcodes', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      await store.putPasscode(passcodeOf(u.id));
      await store.putRecoveryPasscode(passcodeOf(u.id, { hash: Buffer.alloc(32, 0x77), mac: '00:11:22:33:44:66' }));
      t.strictSame(await store.getRecoveryPasscode(u.id), passcodeOf(u.id, { hash: Buffer.alloc(32, 0x77), mac: '00:11:22:33:44:66' }));
      t.strictSame(await store.getPasscode(u.id), passcodeOf(u.id), 'the login passcode is untouched');
      await store.setRecoveryPasscodeAttempts(u.id, 3);
      t.equal((await store.getRecoveryPasscode(u.id))?.attempts, 3);
      await store.putRecoveryPasscode(passcodeOf(u.id, { attempts: 0, keyId: 2 }));
      t.match(await store.getRecoveryPasscode(u.id), { attempts: 0, keyId: 2 }, 'replaced');
      await store.deleteRecoveryPasscode(u.id);
      t.equal(await store.getRecoveryPasscode(u.id), undefined);
      t.ok(await store.getPasscode(u.id));
    });

    t.test('sessions carry their scope; deleting a user deletes every second-factor row', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const full = await addSession(store, u.id);
      const enrol = await addSession(store, u.id, { scope: 'enroll' });
      t.equal((await store.findSessionById(full.id))?.scope, 'full', 'full by default');
      t.equal((await store.findSessionByMaster(enrol.master))?.scope, 'enroll');
      await store.putFactor({ userId: u.id, factor: 'totp', confirmedAt: NOW, mustEnroll: false, lastStep: 1, createdAt: NOW });
      await store.putSecret({ userId: u.id, kind: 'totp', keyId: 1, sealed: Buffer.alloc(40, 1), updatedAt: NOW });
      await store.putRecoveryCodes(u.id, [Buffer.alloc(32, 1)], NOW);
      await store.putRecoveryPasscode(passcodeOf(u.id));
      t.equal(await store.deleteUser(u.id), true);
      t.strictSame(await store.listFactors(u.id), []);
      t.equal(await store.getSecret(u.id, 'totp'), undefined);
      t.equal(await store.countRecoveryCodes(u.id), 0);
      t.equal(await store.getRecoveryPasscode(u.id), undefined);
      t.equal((await store.listSecretsByKey(1, 10)).length, 0);
    });

    // ----------------------------------------------------------------------------------------------
    // Housekeeping
    // ----------------------------------------------------------------------------------------------

    t.test('deletes exactly the dead sessions, their retired tokens and expired passcodes, a batch at a time', async (t) => {
      const store = await open(t);
      const policy: ExpiryPolicy = { idleMs: IDLE, keepRevokedMs: KEEP, batch: 3 };
      const u = await addUser(store);
      const rotateAt = async (s: { id: number; master: Buffer }, generation: number, at: number, expiresAt: number) => {
        const r = rotationOf(s, generation, { now: at, expiresAt, graceUntil: at + 30 * SECOND });
        t.equal(await store.rotateSession(r), true);
        const old = s.master;
        s.master = r.newMaster;
        return old;
      };

      const live = await addSession(store, u.id, { createdAt: NOW - HOUR, expiresAt: NOW + HOUR });
      const liveRetired = await rotateAt(live, 0, NOW - MINUTE, NOW + HOUR);
      const renewable = await addSession(store, u.id, { createdAt: NOW - IDLE + 1, expiresAt: NOW - 1 });
      // Idle far beyond the renewal limit, but its token has not expired: it still checks authorized.
      const unexpiredIdle = await addSession(store, u.id, { createdAt: NOW - 3 * IDLE, expiresAt: NOW + 1 });
      const kept = { live, renewable, unexpiredIdle };

      const dead: Record<string, { id: number; master: Buffer; userId: number }> = {
        atAbsolute: await addSession(store, u.id, { createdAt: NOW - HOUR, expiresAt: NOW, absoluteExpiresAt: NOW }),
        pastAbsolute: await addSession(store, u.id, { createdAt: NOW - 2 * DAY, expiresAt: NOW - DAY, absoluteExpiresAt: NOW - 1 }),
        idleExactly: await addSession(store, u.id, { createdAt: NOW - IDLE, expiresAt: NOW - IDLE + HOUR }),
        revokedAtKeep: await addSession(store, u.id, { expiresAt: NOW + HOUR }),
      };
      await store.revokeSession(dead.revokedAtKeep!.id, NOW - KEEP, 'token-reuse');
      // A dead session renewed four times: its retired tokens go too, counted, a batch at a time.
      const renewed = await addSession(store, u.id, { createdAt: NOW - 3 * IDLE, expiresAt: NOW - 3 * IDLE + HOUR });
      const renewedRetired: Buffer[] = [];
      for (let g = 0; g < 4; g++) renewedRetired.push(await rotateAt(renewed, g, NOW - 3 * IDLE + g * MINUTE, NOW - 2 * IDLE));
      dead.renewed = renewed;

      const expiredOwners: number[] = [];
      for (let i = 0; i < 7; i++) {
        const o = await addUser(store);
        await store.putPasscode(passcodeOf(o.id, { expiresAt: i === 0 ? NOW : NOW - i * MINUTE }));
        expiredOwners.push(o.id);
      }
      await store.putPasscode(passcodeOf(u.id, { expiresAt: NOW + 1 }));

      const calls = await drain(store, NOW, policy);
      for (const c of calls) t.ok(Object.values(c).every((n) => n <= policy.batch), `at most a batch per table per call: ${JSON.stringify(c)}`);
      t.ok(calls.length >= 3, `${calls.length} calls`);
      t.strictSame(total(calls), { passcodes: 7, sessions: 5, retiredTokens: 4, auditRows: 0, counters: 0 });
      t.strictSame(await store.deleteExpired(NOW, policy), { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 }, 'nothing more');

      for (const [k, s] of Object.entries(kept)) t.ok(await store.findSessionById(s.id), `${k} stays`);
      for (const [k, s] of Object.entries(dead)) t.equal(await store.findSessionById(s.id), undefined, `${k} goes`);
      t.equal((await store.findRetiredToken(liveRetired))?.sessionId, live.id, 'a live session keeps its retired tokens');
      for (const m of renewedRetired) t.equal(await store.findRetiredToken(m), undefined, "a dead session's retired tokens go");
      for (const o of expiredOwners) t.equal(await store.getPasscode(o), undefined);
      t.ok(await store.getPasscode(u.id), 'an unexpired passcode stays');
      t.equal(await store.countPendingPasscodes(NOW), 1);

      const later = total(await drain(store, NOW + 2, policy));
      t.equal(later.sessions, 2, 'a moment later the idle one has expired and the renewable one is idle too long');
      t.equal(later.passcodes, 1);
      t.ok(await store.findSessionById(live.id));
    });

    t.test('keeps a revoked session keepRevokedMs after its revocation, whatever its limits', async (t) => {
      const store = await open(t);
      const policy: ExpiryPolicy = { idleMs: IDLE, keepRevokedMs: KEEP, batch: 10 };
      const u = await addUser(store);
      const REVOKED = NOW - DAY;
      const longDead = await addSession(store, u.id, { createdAt: NOW - 40 * DAY, expiresAt: NOW - 39 * DAY, absoluteExpiresAt: NOW - 30 * DAY });
      const stillCurrent = await addSession(store, u.id, { createdAt: NOW - DAY, expiresAt: FAR + KEEP, absoluteExpiresAt: FAR + KEEP });
      await store.revokeSession(longDead.id, REVOKED, 'logout');
      await store.revokeSession(stillCurrent.id, REVOKED, 'admin');
      t.equal((await store.deleteExpired(REVOKED + KEEP - 1, policy)).sessions, 0, 'both kept until keepRevokedMs has passed');
      t.ok(await store.findSessionById(longDead.id));
      t.equal((await store.deleteExpired(REVOKED + KEEP, policy)).sessions, 2, 'both go once it has, limits or not');
      const zero = await addSession(store, u.id, { expiresAt: FAR });
      await store.revokeSession(zero.id, REVOKED + KEEP, 'logout');
      t.equal((await store.deleteExpired(REVOKED + KEEP, { ...policy, keepRevokedMs: 0 })).sessions, 1, 'keepRevokedMs 0: at once');
    });

    t.test('deletes audit rows past retention and expired counters, a batch at a time', async (t) => {
      const store = await open(t);
      const KEEP_AUDIT = 90 * DAY;
      await store.appendAudit([
        ...Array.from({ length: 4 }, (_, i): AuditEvent => ({ at: NOW - KEEP_AUDIT - 1 - i, action: 'old', outcome: 'success' })),
        { at: NOW - KEEP_AUDIT, action: 'boundary', outcome: 'success' },
        { at: NOW, action: 'new', outcome: 'success' },
      ]);
      for (let i = 0; i < 5; i++) await store.hitCounters([`gone-${i}`], NOW - HOUR, NOW - MINUTE);
      await store.hitCounters(['live'], NOW - HOUR, NOW + MINUTE);
      const policy: ExpiryPolicy = { idleMs: IDLE, keepRevokedMs: KEEP, batch: 3 };

      const first = total(await drain(store, NOW, policy));
      t.equal(first.auditRows, 0, 'without keepAuditMs the trail is kept forever');
      t.equal(first.counters, 5, 'expired counters go');
      t.equal((await store.queryAudit({ limit: 100 })).length, 6);
      t.strictSame(await store.readCounters(['live'], NOW), [{ count: 1, until: 0, expiresAt: NOW + MINUTE }], 'a live counter stays');

      const calls = await drain(store, NOW, { ...policy, keepAuditMs: KEEP_AUDIT });
      for (const c of calls) t.ok(Object.values(c).every((n) => n <= policy.batch), `at most a batch per table per call: ${JSON.stringify(c)}`);
      t.equal(total(calls).auditRows, 4, 'rows older than keepAuditMs go');
      t.strictSame((await store.queryAudit({ limit: 100 })).map((r) => r.action), ['new', 'boundary']);
      t.equal(total(await drain(store, NOW, { ...policy, keepAuditMs: 0 })).auditRows, 0, 'keepAuditMs 0: kept forever');
    });

    t.test('deletes expired counters, a batch at a time', async (t) => {
      const store = await open(t);
      for (let i = 0; i < 5; i++) await store.hitCounters([`gone-${i}`], NOW - HOUR, NOW - MINUTE);
      await store.hitCounters(['live'], NOW - HOUR, NOW + MINUTE);
      const calls = await drain(store, NOW, { idleMs: IDLE, keepRevokedMs: KEEP, batch: 2 });
      for (const c of calls) t.ok(c.counters <= 2, `at most a batch per call: ${JSON.stringify(c)}`);
      t.equal(total(calls).counters, 5);
      t.strictSame(await store.readCounters(['live'], NOW), [{ count: 1, until: 0, expiresAt: NOW + MINUTE }]);
      // Gone, not merely expired: a hit at an earlier `now` (where it would still have been live)
      // starts at 1.
      t.equal((await store.hitCounters(['gone-0'], NOW - HOUR, NOW - MINUTE))[0]?.count, 1);
    });

    // ----------------------------------------------------------------------------------------------
    // Transactions
    // ----------------------------------------------------------------------------------------------

    t.test('commits what a transaction did together, and answers what its function returned', async (t) => {
      const store = await open(t);
      const existing = await addUser(store);
      const es = await addSession(store, existing.id);
      const m = master();
      const out = await store.transaction(async (tx) => {
        const u = await tx.createUser({ email: 'tx@example.com', phone: '+1', role: 'user', passwordHash: 'h', createdAt: NOW });
        t.equal((await tx.findUserByEmail('tx@example.com'))?.id, u.id, 'a transaction reads its own writes');
        const sid = await tx.createSession(sessionOf(u.id, { master: m }));
        await tx.putPasscode(passcodeOf(u.id));
        await tx.revokeSession(es.id, NOW, 'logout');
        await tx.appendAudit([{ at: NOW, action: 'login', outcome: 'success', userId: u.id, sessionId: sid }]);
        await tx.hitCounters(['tx'], NOW, NOW + MINUTE);
        return { userId: u.id, sessionId: sid };
      });
      t.equal((await store.findUserByEmail('tx@example.com'))?.id, out.userId, 'the value returned');
      t.equal((await store.findSessionByMaster(m))?.id, out.sessionId);
      t.ok(await store.getPasscode(out.userId));
      t.equal((await store.findSessionById(es.id))?.revokeReason, 'logout');
      t.equal((await store.queryAudit({ limit: 10 }))[0]?.sessionId, out.sessionId);
      t.equal((await store.readCounters(['tx'], NOW))[0]?.count, 1);
    });

    t.test('rolls back everything a transaction did when its function throws, and rethrows', async (t) => {
      const store = await open(t);
      const existing = await addUser(store);
      const es = await addSession(store, existing.id);
      await store.putPasscode(passcodeOf(existing.id));
      const m = master();
      const boom = new Error('boom');
      const r = await attempt(() =>
        store.transaction(async (tx) => {
          const u = await tx.createUser({ email: 'tx@example.com', phone: '+1', role: 'user', passwordHash: 'h', createdAt: NOW });
          await tx.createSession(sessionOf(u.id, { master: m }));
          await tx.revokeSession(es.id, NOW, 'logout');
          await tx.rotateSession(rotationOf(es, 0));
          await tx.setUserRole(existing.id, 'admin');
          await tx.deletePasscode(existing.id);
          await tx.appendAudit([{ at: NOW, action: 'login', outcome: 'success' }]);
          await tx.hitCounters(['tx'], NOW, NOW + MINUTE);
          throw boom;
        }),
      );
      t.ok(!r.ok && r.error === boom, `the same error, got ${describe(r)}`);
      t.equal(await store.findUserByEmail('tx@example.com'), undefined);
      t.equal(await store.findSessionByMaster(m), undefined);
      const s = await store.findSessionByMaster(es.master);
      t.equal(s?.revokedAt, null, 'the revocation is undone');
      t.equal(s?.generation, 0, 'the rotation is undone');
      t.equal(s?.userRole, 'user');
      t.equal(await store.findRetiredToken(es.master), undefined);
      t.ok(await store.getPasscode(existing.id), 'the deleted passcode is back');
      t.strictSame(await store.queryAudit({ limit: 10 }), []);
      t.strictSame(await store.readCounters(['tx'], NOW), [undefined]);
      t.equal(await store.transaction(async () => 'after'), 'after', 'the store works on after a rollback');
    });

    t.test("keeps a transaction's writes from everyone else until it commits", async (t) => {
      const store = await open(t);
      const peer = await peerOf(t, store);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let created!: () => void;
      const wasCreated = new Promise<void>((resolve) => (created = resolve));
      const tx = store.transaction(async (tx) => {
        await tx.createUser({ email: 'pending@example.com', phone: '+1', role: 'user', passwordHash: 'h', createdAt: NOW });
        created();
        await released;
      });
      await wasCreated;
      t.equal(await peer.findUserByEmail('pending@example.com'), undefined, 'another node does not see it');
      release();
      await tx;
      t.ok(await peer.findUserByEmail('pending@example.com'), 'and sees it once committed');
    });

    t.test("runs the store's own calls beside its open transaction: they neither see its writes nor roll back with it", async (t) => {
      const store = await open(t);
      const boom = new Error('rolled back');
      const rolledBack = attempt(() =>
        store.transaction(async (tx) => {
          await tx.createUser({ email: 'doomed@example.com', phone: '+1', role: 'user', passwordHash: 'h', createdAt: NOW });
          await sleep(30);
          throw boom;
        }),
      );
      await sleep(5);
      const seen = await attempt(() => store.findUserByEmail('doomed@example.com'));
      const written = await attempt(() => addUser(store, { email: 'kept@example.com' }));
      t.ok((await rolledBack).ok === false);
      t.ok(seen.ok && seen.value === undefined, `an uncommitted write is not read outside its transaction (${describe(seen)})`);
      t.ok(written.ok || (isBusy(written) && factory.busyUnderContention), `the write outside the transaction succeeds (${describe(written)})`);
      if (written.ok) t.ok(await store.findUserByEmail('kept@example.com'), 'and is not undone by the rollback');
      t.equal(await store.findUserByEmail('doomed@example.com'), undefined);
    });

    t.test('runs several transactions of one store at once, each committing its own work', async (t) => {
      const store = await open(t);
      const results = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          attempt(() =>
            store.transaction(async (tx) => {
              const u = await tx.createUser({ email: `par-${i}@example.com`, phone: '+1', role: 'user', passwordHash: 'h', createdAt: NOW });
              await sleep(5);
              await tx.createSession(sessionOf(u.id));
              return u.id;
            }),
          ),
        ),
      );
      t.ok(results.every((r) => r.ok), results.map(describe).join(', '));
      t.equal((await store.listUsers()).length, 5);
      t.equal((await store.listAllOpenSessions()).length, 5);
    });

    // ----------------------------------------------------------------------------------------------
    // Change feed
    // ----------------------------------------------------------------------------------------------

    t.test('announces every committed change to sessions and users it makes itself', async (t) => {
      const store = await open(t);
      const feed = listen(store);
      t.teardown(feed.stop);
      const policy: ExpiryPolicy = { idleMs: IDLE, keepRevokedMs: 0, batch: 10 };
      // Each case on its own user, so a late event of one case cannot pass for the next.
      const cases: Array<[string, () => Promise<Subject[]>]> = [
        ['revokeSession', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id);
          await feed.quiet();
          await store.revokeSession(s.id, NOW, 'logout');
          return [{ sessionId: s.id, userId: u.id }];
        }],
        ['rotateSession', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id);
          await feed.quiet();
          await store.rotateSession(rotationOf(s, 0));
          return [{ sessionId: s.id, userId: u.id }];
        }],
        ['revokeUserSessions', async () => {
          const u = await addUser(store);
          const a = await addSession(store, u.id);
          const b = await addSession(store, u.id);
          await feed.quiet();
          await store.revokeUserSessions(u.id, NOW, 'admin');
          return [{ sessionId: a.id, userId: u.id }, { sessionId: b.id, userId: u.id }];
        }],
        ['revokeByKey', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id, { keyId: 77 });
          await feed.quiet();
          await store.revokeByKey(77, NOW, 'key-retired');
          return [{ sessionId: s.id, userId: u.id }];
        }],
        ['deleteExpired', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id);
          await store.revokeSession(s.id, NOW - 1, 'logout');
          await feed.quiet();
          // Earlier cases' revoked sessions may go in the same call.
          t.ok((await store.deleteExpired(NOW, policy)).sessions >= 1);
          return [{ sessionId: s.id, userId: u.id }];
        }],
        ['setUserDisabled', async () => {
          const u = await addUser(store);
          await feed.quiet();
          await store.setUserDisabled(u.id, true);
          return [{ userId: u.id }];
        }],
        ['setUserRole', async () => {
          const u = await addUser(store);
          await feed.quiet();
          await store.setUserRole(u.id, 'admin');
          return [{ userId: u.id }];
        }],
        ['setPasswordHash', async () => {
          const u = await addUser(store);
          await feed.quiet();
          await store.setPasswordHash(u.id, 'hash-2');
          return [{ userId: u.id }];
        }],
        ['deleteUser', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id);
          await feed.quiet();
          await store.deleteUser(u.id);
          return [{ userId: u.id }, { sessionId: s.id, userId: u.id }];
        }],
        ['a committed transaction', async () => {
          const u = await addUser(store);
          const s = await addSession(store, u.id);
          await feed.quiet();
          await store.transaction(async (tx) => {
            await tx.revokeSession(s.id, NOW, 'logout');
            await tx.setUserDisabled(u.id, true);
          });
          return [{ sessionId: s.id, userId: u.id }, { userId: u.id }];
        }],
      ];
      for (const [what, run] of cases) {
        const subjects = await run();
        for (const s of subjects) {
          const heard = await feed.waitFor((c) => covers(c, s), SECOND);
          t.ok(heard, `${what} announces ${JSON.stringify(s)}; heard ${JSON.stringify(feed.events)}`);
        }
      }
    });

    t.test('announces nothing for a transaction that rolls back, nor before one commits', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const s = await addSession(store, u.id);
      const feed = listen(store);
      t.teardown(feed.stop);
      await feed.quiet();
      const r = await attempt(() =>
        store.transaction(async (tx) => {
          await tx.revokeSession(s.id, NOW, 'logout');
          await tx.setUserDisabled(u.id, true);
          await tx.deleteUser(u.id);
          throw new Error('rolled back');
        }),
      );
      t.notOk(r.ok);
      store.refresh();
      await sleep(300);
      t.strictSame(feed.events, [], 'nothing announced for a rollback');

      // An announcement before the commit would let a cache reload the old row and keep it.
      const subject = { sessionId: s.id, userId: u.id };
      let early: StoreChange[] = [];
      await store.transaction(async (tx) => {
        await tx.revokeSession(s.id, NOW, 'logout');
        await sleep(50);
        early = feed.events.filter((c) => covers(c, subject));
      });
      t.strictSame(early, [], 'nothing announced while the transaction is open');
      t.ok(await feed.waitFor((c) => covers(c, subject), SECOND), 'announced once committed');
    });

    t.test("hears another node's committed changes (after refresh, within a second), not its rollbacks", async (t) => {
      const store = await open(t);
      const peer = await peerOf(t, store);
      const u = await addUser(store);
      const s = await addSession(store, u.id);
      const r = await addSession(store, u.id);
      const v = await addUser(store);
      t.equal((await store.findSessionByMaster(s.master))?.revokedAt, null, 'read once (a store may cache it)');
      // Whatever opening the peer did is behind us before listening.
      store.refresh();
      const feed = listen(store);
      t.teardown(feed.stop);
      await feed.quiet();

      const heard = async (subject: Subject): Promise<boolean> => {
        store.refresh();
        return feed.waitFor((c) => covers(c, subject), SECOND);
      };

      await peer.transaction(async (tx) => {
        await tx.revokeSession(s.id, NOW, 'logout');
        throw new Error('rolled back');
      }).catch(() => undefined);
      store.refresh();
      await sleep(300);
      t.strictSame(feed.events.filter((c) => covers(c, { sessionId: s.id, userId: u.id })), [], "another node's rollback is not announced");

      t.equal(await peer.revokeSession(s.id, NOW, 'logout'), true);
      t.ok(await heard({ sessionId: s.id, userId: u.id }), `a revocation on another node; heard ${JSON.stringify(feed.events)}`);
      t.equal((await store.findSessionByMaster(s.master))?.revokedAt, NOW, 'and reads show it');

      feed.events.length = 0;
      const rot = rotationOf(r, 0);
      t.equal(await peer.rotateSession(rot), true);
      t.ok(await heard({ sessionId: r.id, userId: u.id }), `a rotation on another node; heard ${JSON.stringify(feed.events)}`);
      t.equal(await store.findSessionByMaster(r.master), undefined, 'the old master no longer finds it here either');

      feed.events.length = 0;
      t.equal(await peer.setUserDisabled(v.id, true), true);
      t.ok(await heard({ userId: v.id }), `disabling a user on another node; heard ${JSON.stringify(feed.events)}`);
      t.equal((await store.findUserById(v.id))?.disabled, true);

      feed.events.length = 0;
      t.equal(await peer.setUserRole(u.id, 'admin'), true);
      t.ok(await heard({ userId: u.id }), `a role change on another node; heard ${JSON.stringify(feed.events)}`);
      t.equal((await store.findSessionByMaster(rot.newMaster))?.userRole, 'admin', "a session read shows the owner's new role");
    });

    t.test('stops telling a listener once it unregisters', async (t) => {
      const store = await open(t);
      const u = await addUser(store);
      const kept: StoreChange[] = [];
      const dropped: StoreChange[] = [];
      const stopKept = store.onChange((c) => kept.push(c));
      const stop = store.onChange((c) => dropped.push(c));
      t.teardown(stopKept);
      stop();
      await store.setUserDisabled(u.id, true);
      t.ok(await eventually(() => kept.some((c) => covers(c, { userId: u.id })), SECOND), 'a listener still registered hears it');
      await sleep(50);
      t.strictSame(dropped, [], 'the unregistered one does not');
    });

    // ----------------------------------------------------------------------------------------------
    // exclusive
    // ----------------------------------------------------------------------------------------------

    t.test('runs an exclusive function once per name at a time', async (t) => {
      const store = await open(t);
      let ran = 0;
      t.equal(
        await store.exclusive('housekeeping', async () => {
          ran++;
          t.equal(await store.exclusive('housekeeping', async () => ran++), undefined, 'the same name, nested: not run');
          t.equal(await store.exclusive('other', async () => 'other ran'), 'other ran', 'another name runs');
          return 42;
        }),
        42,
      );
      t.equal(ran, 1);

      const both = await Promise.all([
        store.exclusive('race', async () => (await sleep(50), 'a')),
        store.exclusive('race', async () => (await sleep(50), 'b')),
      ]);
      t.equal(both.filter((x) => x === undefined).length, 1, `one of two at once runs: ${JSON.stringify(both)}`);

      const boom = new Error('boom');
      const r = await attempt(() => store.exclusive('housekeeping', async () => { throw boom; }));
      t.ok(!r.ok && r.error === boom, 'a throw is rethrown');
      t.equal(await store.exclusive('housekeeping', async () => 'again'), 'again', 'and the name is free again');

      if (factory.exclusiveAcrossPeers) {
        const peer = await peerOf(t, store);
        t.equal(
          await store.exclusive('housekeeping', async () => peer.exclusive('housekeeping', async () => 'peer ran')),
          undefined,
          'another node does not run it meanwhile',
        );
        t.equal(await peer.exclusive('housekeeping', async () => 'peer ran'), 'peer ran', 'but does once it is free');
      }
    });

    // ----------------------------------------------------------------------------------------------
    // Concurrency: two stores on one database are two nodes
    // ----------------------------------------------------------------------------------------------

    t.test('lets exactly one of two nodes racing one passcode use it', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      const login = (s: Store, userId: number) =>
        attempt(() =>
          s.transaction(async (tx) => {
            const p = await tx.getPasscode(userId);
            if (!p) return undefined;
            await sleep(5); // widens the window a missing row lock would leave open
            await tx.deletePasscode(userId);
            return tx.createSession(sessionOf(userId));
          }),
        );
      let busy = 0;
      for (let i = 0; i < 20; i++) {
        const u = await addUser(a);
        await a.putPasscode(passcodeOf(u.id));
        const results = await Promise.all(i % 2 ? [login(a, u.id), login(b, u.id)] : [login(b, u.id), login(a, u.id)]);
        const winners = results.filter((r) => r.ok && typeof r.value === 'number');
        busy += results.filter(isBusy).length;
        if (winners.length !== 1 || !results.every((r) => winners.includes(r) || lostFairly(r, (v) => v === undefined))) {
          t.fail(`round ${i}: exactly one winner, the other finding no passcode; got ${results.map(describe).join(' | ')}`);
          return;
        }
        t.equal((await a.listOpenSessions(u.id)).length, 1, `round ${i}: one session`);
        t.equal(await b.getPasscode(u.id), undefined);
      }
      t.pass(`20 rounds, one winner each (${busy} losers were busy)`);
    });

    t.test('lets exactly one of two nodes renewing the same token at once succeed', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      const u = await addUser(a);
      let busy = 0;
      for (let i = 0; i < 10; i++) {
        const s = await addSession(a, u.id);
        const ra = rotationOf(s, 0, { nonce: Buffer.alloc(16, 0xaa), keyId: 2 });
        const rb = rotationOf(s, 0, { nonce: Buffer.alloc(16, 0xbb), keyId: 3 });
        const results = await Promise.all([attempt(() => a.rotateSession(ra)), attempt(() => b.rotateSession(rb))]);
        const wins = results.map((r) => r.ok && r.value === true);
        busy += results.filter(isBusy).length;
        if (wins.filter(Boolean).length !== 1 || !results.every((r, k) => wins[k] || lostFairly(r, (v) => v === false))) {
          t.fail(`round ${i}: exactly one true, the other false; got ${results.map(describe).join(' | ')}`);
          return;
        }
        const won = wins[0] ? ra : rb;
        const lost = wins[0] ? rb : ra;
        const now = await a.findSessionById(s.id);
        t.equal(now?.generation, 1, `round ${i}: rotated once`);
        t.strictSame(now?.master, won.newMaster, "the winner's master");
        t.equal(now?.keyId, won.keyId);
        const retired = await b.findRetiredToken(s.master);
        t.strictSame(retired?.nonce, won.nonce, "one retired token, the winner's");
        t.equal(retired?.rotateKeyId, won.keyId);
        t.equal(await a.findSessionByMaster(lost.newMaster), undefined, "the loser's master finds nothing");
      }
      t.pass(`10 rounds (${busy} losers were busy)`);
    });

    t.test('never lets a rotation succeed on a revoked session, however the two race', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      const u = await addUser(a);
      for (let i = 0; i < 10; i++) {
        const s = await addSession(a, u.id);
        const rot = rotationOf(s, 0);
        const [revoked, rotated] = await Promise.all(
          i % 2 ? [attempt(() => a.revokeSession(s.id, NOW, 'logout')), attempt(() => b.rotateSession(rot))] : [attempt(() => b.revokeSession(s.id, NOW, 'logout')), attempt(() => a.rotateSession(rot))],
        );
        t.ok(revoked.ok ? revoked.value === true : isBusy(revoked) && factory.busyUnderContention, `round ${i}: revoke ${describe(revoked)}`);
        t.ok(rotated.ok || (isBusy(rotated) && factory.busyUnderContention), `round ${i}: rotate ${describe(rotated)}`);
        const after = await a.findSessionById(s.id);
        if (revoked.ok) t.equal(after?.revokedAt, NOW, `round ${i}: the revocation holds, rotated or not`);
        if (rotated.ok && rotated.value) {
          t.strictSame(after?.master, rot.newMaster, `round ${i}: a rotation that answered true happened (before the revocation)`);
          t.equal(after?.generation, 1);
        } else {
          t.equal(after?.generation, 0, `round ${i}: a rotation that answered false changed nothing`);
          t.equal(await a.findRetiredToken(s.master), undefined);
        }
      }

      // Deterministically: the rotation arrives while the revocation's transaction is open.
      const s = await addSession(a, u.id);
      let rotation: Promise<Settled<boolean>> | undefined;
      await a.transaction(async (tx) => {
        t.ok(await tx.findSessionById(s.id), 'the revoking transaction holds the row');
        await tx.revokeSession(s.id, NOW, 'logout');
        rotation = attempt(() => b.rotateSession(rotationOf(s, 0)));
        await sleep(50);
      });
      const late = await rotation!;
      t.ok(lostFairly(late, (v) => v === false), `a rotation waiting on the revocation answers false: ${describe(late)}`);
      const after = await a.findSessionById(s.id);
      t.equal(after?.generation, 0);
      t.equal(after?.revokedAt, NOW);
    });

    t.test('lets at most one of two nodes take the last place under a session cap', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      // listOpenSessions in a transaction promises on its own that two logins cannot both see
      // room; lockUser is the explicit way. Both are held to it, with sessions to lock (cap 3, two
      // open) and with none (cap 1): locking existing rows alone cannot stop two inserts.
      const variants = [
        { cap: 3, lockUser: true },
        { cap: 3, lockUser: false },
        { cap: 1, lockUser: true },
        { cap: 1, lockUser: false },
      ];
      let busy = 0;
      for (const { cap, lockUser } of variants) {
        const login = (s: Store, userId: number) =>
          attempt(() =>
            s.transaction(async (tx) => {
              if (lockUser) await tx.lockUser(userId);
              const open = await tx.listOpenSessions(userId);
              if (open.length >= cap) return false;
              await sleep(5); // widens the window two counts could share
              await tx.createSession(sessionOf(userId));
              return true;
            }),
          );
        for (let i = 0; i < 5; i++) {
          const u = await addUser(a);
          for (let k = 0; k < cap - 1; k++) await addSession(a, u.id);
          const results = await Promise.all(i % 2 ? [login(a, u.id), login(b, u.id)] : [login(b, u.id), login(a, u.id)]);
          busy += results.filter(isBusy).length;
          const wins = results.filter((r) => r.ok && r.value === true).length;
          const open = (await a.listOpenSessions(u.id)).length;
          if (open !== cap || wins !== 1 || !results.every((r) => (r.ok && r.value === true) || lostFairly(r, (v) => v === false))) {
            t.fail(`cap ${cap}, lockUser ${lockUser}, round ${i}: one new session (${cap} open); got ${open} open after ${results.map(describe).join(' | ')}`);
            return;
          }
        }
        t.pass(`cap ${cap}, ${lockUser ? 'lockUser first' : 'listOpenSessions alone'}: 5 rounds, the cap held`);
      }
      if (busy) t.comment(`${busy} losers were busy`);
      // Outside a transaction lockUser is a no-op, not an error.
      await a.lockUser(1);
    });

    t.test('a decision on counters read in a transaction holds against a second node deciding at once', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      await a.hitCounters(['gate'], NOW, NOW + HOUR);
      // Each node admits one attempt only if the counter is below 2, then counts it: read, decide,
      // hit, in one transaction. Without the read's row lock both would see 1 and both admit.
      const admit = (s: Store): Promise<boolean> =>
        s.transaction(async (tx) => {
          const [c] = await tx.readCounters(['gate'], NOW);
          if ((c?.count ?? 0) >= 2) return false;
          await sleep(20);
          await tx.hitCounters(['gate'], NOW, NOW + HOUR);
          return true;
        });
      const results = await Promise.all([a, b, a, b].map((s) => attempt(() => admit(s))));
      const admitted = results.filter((r) => r.ok && r.value).length;
      t.equal(admitted, 1, 'exactly one admitted');
      t.ok(results.every((r) => r.ok || (factory.busyUnderContention && isBusy(r))), 'the others refused (or busy where that may happen)');
      t.equal((await a.readCounters(['gate'], NOW))[0]?.count, 2);
    });

    t.test('counts 100 concurrent hits from two nodes exactly once each', async (t) => {
      const a = await open(t);
      const b = await peerOf(t, a);
      let retries = 0;
      // Busy means nothing was changed: retrying must not count twice (where busy may happen at all).
      const hit = async (s: Store): Promise<number> => {
        for (;;) {
          const r = await attempt(() => s.hitCounters(['login:ip:192.0.2.1'], NOW, NOW + HOUR));
          if (r.ok) return r.value[0]!.count;
          if (!(factory.busyUnderContention && isBusy(r))) throw r.error;
          retries++;
          await sleep(1);
        }
      };
      const counts = await Promise.all(Array.from({ length: 100 }, (_, i) => hit(i % 2 ? a : b)));
      t.strictSame([...counts].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1), 'every count 1..100 answered once');
      t.equal((await a.readCounters(['login:ip:192.0.2.1'], NOW))[0]?.count, 100);
      t.equal((await b.readCounters(['login:ip:192.0.2.1'], NOW))[0]?.count, 100);
      if (retries) t.comment(`${retries} busy retries`);
    });
  });
}
