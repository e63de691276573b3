// Two Hellwall processes on one PostgreSQL: a session made on one node is honoured by the other,
// and a revocation acknowledged by one node is honoured by the other within the documented bound
// (README "Several nodes": at most 100 ms on a LAN; the session cache is invalidated by NOTIFY).
import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import type { ErrorResponse } from '../../src/protocol/messages.gen.js';
import { ADMIN, ALICE, BOB, CAROL, check, macOf, operator, percentile, propagation, startCluster, type Held } from '../helpers/cluster.js';

// The documented bound (README "Several nodes"): the notification's delay, under 100 ms on a LAN,
// measured at p50 about 1 ms and p99 about 20 ms here. A single round on this shared 2-core machine
// (PostgreSQL, two nodes and the test, with other test files beside them) can be delayed by the
// scheduler alone, so one round is held to HARD_MS and the median of the rounds to BOUND_MS.
const BOUND_MS = 100;
const HARD_MS = 500;

const OPERATORS = [1, 2, 3, 4].map(operator);
const c = await startCluster(t, { name: 'sessions', users: [ADMIN, ALICE, BOB, CAROL, ...OPERATORS] });
if (c) {
  const clients = {
    A: await c.connect('A'),
    B: await c.connect('B'),
  };
  const ok = async <T extends { status: string }>(p: Promise<T>, what: string): Promise<Exclude<T, ErrorResponse>> => {
    const res = await p;
    if (res.status !== 'ok') throw new Error(`${what}: ${JSON.stringify(res)}`);
    return res as Exclude<T, ErrorResponse>;
  };
  const logout = (client: HellwallClient, held: Held) => async (): Promise<void> => {
    await ok(client.logout({ token: held.token, mac: held.mac }), 'logout');
  };

  t.test('a session made on node A checks authorized on node B, bound to the same address and MAC', async (t) => {
    const held = await c.login('A', ALICE, macOf(1));
    const onB = await check(clients.B, held);
    t.equal(onB.status, 'authorized', 'node B authorizes a token node A issued');
    t.match(onB, { user: { email: ALICE.email, role: 'user' }, expiresAt: Number });
    t.equal((await check(clients.A, held)).status, 'authorized', 'and node A still does');
    t.equal((await clients.B.check({ token: held.token, mac: macOf(2), request: 'inventory.read' })).status, 'unauthorized', 'another MAC on B: unauthorized');
    const elsewhere = await c.connect('B', '127.0.0.2');
    t.equal((await check(elsewhere, held)).status, 'unauthorized', 'another client address on B: unauthorized');

    const fromB = await c.login('B', ALICE, macOf(3));
    t.equal((await check(clients.A, fromB)).status, 'authorized', 'and the other way round: made on B, checked on A');
    const list = await clients.A.listSessions({ token: fromB.token, mac: fromB.mac });
    if (list.status !== 'ok') return t.fail(JSON.stringify(list));
    t.ok(list.sessions.length >= 2, 'node A lists the sessions made on both nodes');
  });

  t.test(`a logout acknowledged on A is refused on B within ${BOUND_MS} ms (median; each within ${HARD_MS} ms)`, async (t) => {
    const rounds = 12;
    // Logged in together, four operators at a time; each session then revoked on its own.
    const sessions = await Promise.all(Array.from({ length: rounds }, (_, i) => c.login('A', OPERATORS[i % OPERATORS.length]!, macOf(100 + i))));
    const figures: number[] = [];
    let stale = 0;
    for (const [i, held] of sessions.entries()) {
      // The odd rounds revoke through B and observe on A: the bound holds both ways.
      const [revoker, observer] = i % 2 === 0 ? [clients.A, clients.B] : [clients.B, clients.A];
      t.equal((await check(observer, held)).status, 'authorized', `round ${i}: the observing node has the session (and caches it)`);
      const p = await propagation(observer, held, logout(revoker, held));
      figures.push(p.ms);
      stale += p.staleAnswers;
      t.ok(p.ms < HARD_MS, `round ${i}: refused ${p.ms.toFixed(2)} ms after the acknowledgement`);
      t.equal((await check(revoker, held)).status, 'unauthorized', `round ${i}: the revoking node refuses too`);
    }
    t.ok(percentile(figures, 0.5) < BOUND_MS, `the median round is within ${BOUND_MS} ms`);
    t.comment(
      `revocation propagation over ${rounds} logouts: p50 ${percentile(figures, 0.5).toFixed(2)} ms, ` +
        `max ${Math.max(...figures).toFixed(2)} ms; ${stale} authorized answer(s) to checks sent after an acknowledgement`,
    );
  });

  t.test('admin disable, password reset and session.revoke on one node are honoured by the other', async (t) => {
    const admin = c.admin!;

    // Disable on B, observed on A.
    const bob = await c.login('A', BOB, macOf(201));
    t.equal((await check(clients.A, bob)).status, 'authorized', "A caches Bob's session");
    const disabled = await propagation(clients.A, bob, async () => {
      const res = await ok(clients.B.admin('admin.user.disable', admin, { email: BOB.email }), 'disable');
      t.equal(res.sessionsEnded, 1, "the disable ended Bob's session");
    });
    t.ok(disabled.ms < HARD_MS, `admin.user.disable on B: A refused ${disabled.ms.toFixed(2)} ms after the acknowledgement`);
    const refused = await clients.A.requestPasscode({ email: BOB.email, password: BOB.password, mac: macOf(202) });
    t.equal(refused.status, 'ok', 'passcode.request answers alike for a disabled account');
    await ok(clients.A.admin('admin.user.enable', admin, { email: BOB.email }), 'enable');
    t.equal((await check(clients.B, bob)).status, 'unauthorized', 're-enabling does not bring the ended session back, on either node');
    t.equal((await check(clients.A, bob)).status, 'unauthorized', 'nor on A');

    // Password reset on A, observed on B; the new password works through B.
    const carol = await c.login('B', CAROL, macOf(203));
    t.equal((await check(clients.B, carol)).status, 'authorized', "B caches Carol's session");
    const newPassword = 'carol another correct horse';
    const reset = await propagation(clients.B, carol, async () => {
      const res = await ok(clients.A.admin('admin.user.reset_password', admin, { email: CAROL.email, password: newPassword }), 'reset');
      t.equal(res.sessionsEnded, 1);
    });
    t.ok(reset.ms < HARD_MS, `admin.user.reset_password on A: B refused ${reset.ms.toFixed(2)} ms after the acknowledgement`);
    const again = await c.login('B', { ...CAROL, password: newPassword }, macOf(204));
    t.equal((await check(clients.A, again)).status, 'authorized', 'the new password logs in on B, and the session checks on A');

    // session.revoke: one of Alice's sessions (made on B) ends another of hers (made on A).
    const first = await c.login('A', ALICE, macOf(205));
    const second = await c.login('B', ALICE, macOf(206));
    t.equal((await check(clients.B, first)).status, 'authorized', 'B caches the session to be revoked');
    const list = await clients.B.listSessions({ token: second.token, mac: second.mac });
    if (list.status !== 'ok') return t.fail(JSON.stringify(list));
    const target = list.sessions.find((s) => s.mac === first.mac);
    if (!target) return t.fail('the first session is listed');
    const revoked = await propagation(clients.B, first, async () => {
      await ok(clients.A.revokeSession({ token: second.token, mac: second.mac, sessionId: target.id }), 'session.revoke');
    });
    t.ok(revoked.ms < HARD_MS, `session.revoke on A: B refused ${revoked.ms.toFixed(2)} ms after the acknowledgement`);
    t.equal((await check(clients.A, second)).status, 'authorized', 'the revoking session itself lives on, on both nodes');
    t.equal((await check(clients.B, second)).status, 'authorized', 'and on B');

    // admin.session.revoke on B, observed on A.
    const third = await c.login('B', ALICE, macOf(207));
    t.equal((await check(clients.A, third)).status, 'authorized', 'A caches the session an admin will revoke');
    const listed = await clients.A.listSessions({ token: third.token, mac: third.mac });
    const id = listed.status === 'ok' ? listed.sessions.find((s) => s.current)?.id : undefined;
    if (id === undefined) return t.fail(JSON.stringify(listed));
    const byAdmin = await propagation(clients.A, third, async () => {
      await ok(clients.B.admin('admin.session.revoke', admin, { sessionId: id }), 'admin.session.revoke');
    });
    t.ok(byAdmin.ms < HARD_MS, `admin.session.revoke on B: A refused ${byAdmin.ms.toFixed(2)} ms after the acknowledgement`);
    t.comment(
      `propagation: disable ${disabled.ms.toFixed(2)} ms, reset ${reset.ms.toFixed(2)} ms, session.revoke ${revoked.ms.toFixed(2)} ms, ` +
        `admin.session.revoke ${byAdmin.ms.toFixed(2)} ms; stale answers ${disabled.staleAnswers + reset.staleAnswers + revoked.staleAnswers + byAdmin.staleAnswers}`,
    );

    const rows = await c.db((db) => db.query<{ action: string; n: string }>(`SELECT action, count(*) AS n FROM audit WHERE action LIKE 'admin.%' GROUP BY action`));
    const counts = Object.fromEntries(rows.rows.map((r) => [r.action, Number(r.n)]));
    t.match(counts, { 'admin.user.disable': 1, 'admin.user.enable': 1, 'admin.user.reset_password': 1, 'admin.session.revoke': 1 }, 'each admin action left one audit row in the shared database');
  });
}
