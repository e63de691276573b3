import Database from 'better-sqlite3';
import path from 'node:path';
import t from 'tap';
import { DATABASE_FILE } from '../../src/app.js';
import { Housekeeper } from '../../src/ops/housekeeper.js';
import type { ExpiredCounts, Store } from '../../src/store/store.js';
import { ALICE, MAC, startHarness, type Harness } from '../helpers/harness.js';
import { httpGet, sample } from '../helpers/http.js';

const DAY = 86_400_000;
// The timer is tested on its own below; these tests run passes when they choose.
const MANUAL = { housekeeping: { intervalSeconds: 0 } };

/** `n` sessions of Alice's that ended long ago, written straight into the store in one transaction. */
async function insertDeadSessions(h: Harness, n: number): Promise<void> {
  const userId = (await h.app.store.findUserByEmail(ALICE.email))!.id;
  const now = h.clock.now;
  await h.app.store.transaction(async (tx) => {
    for (let i = 0; i < n; i++) {
      const master = Buffer.alloc(32);
      master.writeUInt32BE(i + 1);
      master.write('dead', 8);
      await tx.createSession({ userId, master, mac: MAC, ip: '127.0.0.1', createdAt: now - 40 * DAY, expiresAt: now - 39 * DAY, absoluteExpiresAt: now - 10 * DAY, keyId: 1 });
    }
  });
}

function sessionRows(h: Harness): number {
  const db = new Database(path.join(h.dataDir, DATABASE_FILE), { readonly: true });
  try {
    return db.prepare('SELECT count(*) FROM sessions').pluck().get() as number;
  } finally {
    db.close();
  }
}

t.test('a session past its absolute limit is deleted by a pass, and its token then finds nothing', async (t) => {
  const h = await startHarness(t, { config: MANUAL });
  const client = await h.connect();
  const { token } = await h.login(client);
  t.equal((await client.check({ token, mac: MAC, request: 'r' })).status, 'authorized', 'checked (and so cached by the server)');

  t.same((await h.app.housekeeper.runOnce()).deleted, { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 }, 'nothing is dead yet');
  h.clock.advance(h.app.config.tokens.absoluteSeconds * 1000);
  const pass = await h.app.housekeeper.runOnce();
  // The counter is the login's passcodes-per-hour count (limits.passcodesPerHour), long expired.
  t.same(pass.deleted, { passcodes: 0, sessions: 1, retiredTokens: 0, auditRows: 0, counters: 1 });
  t.equal(pass.batches, 1);
  t.equal(sessionRows(h), 0, 'the row is gone');

  t.equal((await client.check({ token, mac: MAC, request: 'r' })).status, 'unauthorized');
  t.equal(h.logs.find({ event: 'token.check', reason: 'unknown-token-or-binding' }).length, 1, 'not served from the cache: the session is unknown');
  t.match(h.logs.find({ msg: 'expired rows deleted' }), [{ level: 30, event: 'housekeeping', deleted: { sessions: 1 }, batches: 1 }], 'one info line, only for the pass that deleted');
  const metrics = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(metrics, 'hellwall_housekeeping_deleted_total{table="sessions"}'), 1);
});

t.test('a backlog of 5,000 dead sessions goes in batches, with token checks answered in between', async (t) => {
  const h = await startHarness(t, { config: MANUAL });
  const client = await h.connect();
  const { token } = await h.login(client);
  await insertDeadSessions(h, 5000);

  // The app's store and policy, with each batch timed.
  const batchMs: number[] = [];
  const timed: Store = {
    ...h.app.store,
    async deleteExpired(now, policy): Promise<ExpiredCounts> {
      const start = performance.now();
      try {
        return await h.app.store.deleteExpired(now, policy);
      } finally {
        batchMs.push(performance.now() - start);
      }
    },
  };
  const policy = { idleMs: h.app.config.tokens.idleSeconds * 1000, keepRevokedMs: 0, batch: 500 };
  const housekeeper = new Housekeeper({ store: timed, clock: h.clock.fn, log: h.app.log, metrics: h.app.metrics, intervalMs: 0, policy });

  let turns = 0;
  let done = false;
  const tick = (): void => {
    if (done) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  let answeredDuring = 0;
  const statuses = new Set<string>();
  const checking = (async () => {
    while (!done) {
      const res = await client.check({ token, mac: MAC, request: 'r' });
      statuses.add(res.status);
      if (!done) answeredDuring++;
    }
  })();
  const pass = await housekeeper.runOnce();
  done = true;
  await checking;

  t.same(pass.deleted, { passcodes: 0, sessions: 5000, retiredTokens: 0, auditRows: 0, counters: 0 });
  t.equal(pass.batches, 11, 'ten full batches of 500, then one that finds nothing');
  t.ok(turns >= pass.batches - 1, `the event loop turned between batches (${turns} turns)`);
  t.ok(answeredDuring >= 1, `${answeredDuring} token checks answered during the pass`);
  t.same([...statuses], ['authorized'], 'the live session is untouched');
  t.equal(sessionRows(h), 1);
  const longest = Math.max(...batchMs);
  t.comment(`5,000 sessions in ${pass.ms} ms, ${pass.batches} batches, longest batch ${longest.toFixed(1)} ms`);
  const metrics = (await httpGet(h.opsPort, '/metrics')).body;
  t.equal(sample(metrics, 'hellwall_housekeeping_deleted_total{table="sessions"}'), 5000);
});

t.test('a busy database skips the pass with a warning; the next pass deletes', async (t) => {
  const h = await startHarness(t, { config: MANUAL });
  await insertDeadSessions(h, 3);
  const other = new Database(path.join(h.dataDir, DATABASE_FILE));
  t.teardown(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  const skipped = await h.app.housekeeper.runOnce();
  t.equal(skipped.busy, true);
  t.same(skipped.deleted, { passcodes: 0, sessions: 0, retiredTokens: 0, auditRows: 0, counters: 0 });
  t.equal(h.logs.find({ msg: 'housekeeping skipped: database busy; the next pass retries' }).length, 1);
  other.exec('ROLLBACK');
  const next = await h.app.housekeeper.runOnce();
  t.equal(next.busy, false);
  t.equal(next.deleted.sessions, 3);
});

t.test('the timer runs passes until stopped; a stopped housekeeper runs no more', async (t) => {
  const h = await startHarness(t, { config: MANUAL });
  const recorded: Array<[string, number]> = [];
  const housekeeper = new Housekeeper({
    store: h.app.store,
    clock: h.clock.fn,
    log: h.app.log,
    metrics: { housekeeping: (table, n) => recorded.push([table, n]) },
    intervalMs: 10,
    policy: { idleMs: DAY, keepRevokedMs: 0, batch: 100 },
  });
  t.teardown(() => housekeeper.stop());
  await insertDeadSessions(h, 2);
  housekeeper.start();
  housekeeper.start(); // idempotent: still one timer
  for (let i = 0; i < 200 && recorded.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(recorded, [['sessions', 2]]);
  await housekeeper.stop();
  const master = Buffer.alloc(32, 0xee);
  await h.app.store.createSession({ userId: (await h.app.store.findUserByEmail(ALICE.email))!.id, master, mac: MAC, ip: '127.0.0.1', createdAt: 0, expiresAt: 1, absoluteExpiresAt: 2, keyId: 1 });
  await new Promise((r) => setTimeout(r, 60));
  t.ok(await h.app.store.findSessionByMaster(master), 'no pass after stop()');
  t.same(recorded, [['sessions', 2]]);
});

t.test('app.listen() starts the housekeeper on housekeeping.intervalSeconds; close() stops it', async (t) => {
  const h = await startHarness(t, { config: { housekeeping: { intervalSeconds: 1 } } });
  await insertDeadSessions(h, 4);
  for (let i = 0; i < 300 && h.logs.find({ msg: 'expired rows deleted' }).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.match(h.logs.find({ msg: 'expired rows deleted' }), [{ deleted: { sessions: 4 } }]);
  await h.app.close(100);
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(h.logs.find({ msg: 'housekeeping failed' }).length, 0, 'no pass ran against the closed database');
});
