// Renewal across nodes [P-4.5]: the same expired token arriving at two nodes at once yields one
// successor (row locks in the shared database, not process memory), and a rotated-out token used
// after the grace ends the session everywhere.
import t from 'tap';
import { check, macOf, operator, propagation, sleep, startCluster, type Held } from '../helpers/cluster.js';

// The grace must be shorter than the token's life (config); the successor must outlive the grace
// by enough for the last checks to run on a loaded machine.
const TTL_S = 8;
const GRACE_S = 4;
const SESSIONS = 8;
// One session per operator: their logins run in parallel.
const OPERATORS = Array.from({ length: SESSIONS }, (_, i) => operator(i + 1));

const c = await startCluster(t, {
  name: 'renewal',
  users: [{ ...operator(0), role: 'admin' }, ...OPERATORS],
  env: { HELLWALL_TOKEN_TTL: String(TTL_S), HELLWALL_ROTATION_GRACE: String(GRACE_S) },
});
if (c) {
  t.test('the same expired token sent to A and B at the same instant yields one successor, and its reuse after the grace ends the session on both', async (t) => {
    // One connection per node per session: the two checks of a pair leave together and are not
    // queued behind one another on either side. Each session is checked right after its own login,
    // so a slow machine (scrypt for eight logins) does not let a token expire before its first check.
    const sessions = await Promise.all(
      Array.from({ length: SESSIONS }, async (_, i) => {
        const h = await c.login(i % 2 ? 'B' : 'A', OPERATORS[i % OPERATORS.length]!, macOf(i));
        const pair = { A: await c.connect('A'), B: await c.connect('B') };
        return { h, pair, answers: await Promise.all([check(pair.A, h), check(pair.B, h)]) };
      }),
    );
    const held = sessions.map((s) => s.h);
    const pairs = sessions.map((s) => s.pair);
    const expiries: number[] = [];
    const warm = sessions.map((s) => s.answers);
    for (const [i, answers] of warm.entries()) {
      for (const res of answers) {
        if (res.status !== 'authorized') return t.fail(`session ${i} (the machine is slower than TTL_S allows?): ${JSON.stringify(res)}`);
        expiries.push(res.expiresAt);
      }
    }
    t.pass(`${SESSIONS} sessions authorized on both nodes (and in both nodes' caches)`);
    await sleep(Math.max(...expiries) - Date.now() + 50);

    // Every pair at once: 2 × SESSIONS checks of expired tokens in flight together.
    const raced = await Promise.all(held.map((h, i) => Promise.all([check(pairs[i]!.A, h), check(pairs[i]!.B, h)])));
    // Every renewal committed before this; its grace ends GRACE_S after its commit, at the latest.
    const racedAt = Date.now();
    const successors: Held[] = [];
    for (const [i, [a, b]] of raced.entries()) {
      t.equal(a.status, 'renew', `session ${i}: A answers renew`);
      t.equal(b.status, 'renew', `session ${i}: B answers renew`);
      if (a.status !== 'renew' || b.status !== 'renew') return t.fail(`session ${i}: ${JSON.stringify([a, b])}`);
      t.equal(a.token, b.token, `session ${i}: both nodes hand out the same new token`);
      t.not(a.token, held[i]!.token);
      successors.push({ ...held[i]!, token: a.token });
    }
    const renewRows = await c.db((db) =>
      db.query<{ action: string; n: string }>(`SELECT action, count(*) AS n FROM audit WHERE action IN ('token.renew', 'token.reuse') GROUP BY action`),
    );
    const counts = Object.fromEntries(renewRows.rows.map((r) => [r.action, Number(r.n)]));
    t.same(counts, { 'token.renew': SESSIONS }, 'one renewal per session, and no reuse revocation');
    const generations = await c.db((db) => db.query<{ generation: number; revoked_at: string | null }>('SELECT generation, revoked_at FROM sessions'));
    t.ok(generations.rows.length >= SESSIONS);
    t.ok(
      generations.rows.every((r) => r.revoked_at === null && r.generation <= 1),
      'no session was revoked, none rotated twice',
    );
    for (const [i, s] of successors.entries()) {
      t.equal((await check(pairs[i]!.A, s)).status, 'authorized', `session ${i}: the new token checks on A`);
      t.equal((await check(pairs[i]!.B, s)).status, 'authorized', `session ${i}: and on B`);
    }
    // Within the grace, the old token still yields that same successor from either node.
    const late = await check(pairs[0]!.B, held[0]!);
    t.match(late, { status: 'renew', token: successors[0]!.token }, 'within the grace the old token is handed the same successor');

    // After the grace: the old token on one node ends the session; the other node refuses it too.
    await sleep(racedAt + GRACE_S * 1000 + 200 - Date.now());
    // The successor is still inside its TTL (and in A's cache): unrevoked it would be authorized;
    // revoked by B's reuse detection, A refuses it within the bound.
    const ended = await propagation(pairs[1]!.A, successors[1]!, async () => {
      const reused = await check(pairs[1]!.B, held[1]!);
      t.equal(reused.status, 'unauthorized', 'the old token after the grace is refused');
    });
    t.ok(ended.ms < 100, `the session ended on A as well, ${ended.ms.toFixed(2)} ms after B answered`);
    t.match(await check(pairs[1]!.B, successors[1]!), { status: 'unauthorized' }, 'and on B');
    const reasons = await c.db((db) =>
      db.query<{ reason: string | null }>(
        `SELECT s.revoke_reason AS reason FROM sessions s JOIN audit a ON a.session_id = s.id WHERE a.action = 'token.reuse'`,
      ),
    );
    t.same(reasons.rows, [{ reason: 'token-reuse' }], 'one reuse revocation, recorded with its reason');
    t.equal((await check(pairs[2]!.B, successors[2]!)).status, 'authorized', 'another session, untouched by the reuse, is still authorized');
  });
}
