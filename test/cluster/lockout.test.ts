// Account lockout counted across nodes: the counters live in the shared database and are counted
// in one locked transaction per attempt, so a flood split over both nodes trips one lockout after
// exactly `limits.lockoutFailures` attempts, whatever the interleaving.
import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { ALICE, macOf, sleep, startCluster, type NodeName } from '../helpers/cluster.js';

const LOCKOUT = 10;
const FLOOD = 30;
const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'];

const c = await startCluster(t, {
  name: 'lockout',
  users: [ALICE],
  env: {
    HELLWALL_LIMIT_LOCKOUT_FAILURES: String(LOCKOUT),
    // The per account-and-address backoff must not be what refuses: only the shared lockout.
    HELLWALL_LIMIT_FREE_FAILURES: '1000',
  },
});
if (c) {
  t.test(`a failure flood split over both nodes trips one shared lockout after exactly ${LOCKOUT} attempts`, async (t) => {
    // The owner logs in once from 127.0.0.1 first: that address is then "known" for the account.
    const owner = await c.login('A', ALICE, macOf(1));

    // One connection per address per node; attempt i goes to node A or B alternately.
    const clients = new Map<string, HellwallClient>();
    for (const ip of ADDRESSES) for (const node of ['A', 'B'] as const) clients.set(`${node}${ip}`, await c.connect(node, ip));
    const attempts = Array.from({ length: FLOOD }, (_, i) => ({ node: (i % 2 ? 'B' : 'A') as NodeName, ip: ADDRESSES[i % ADDRESSES.length]! }));
    const answers = await Promise.all(
      attempts.map(({ node, ip }, i) =>
        clients.get(`${node}${ip}`)!.requestPasscode({ email: ALICE.email, password: `wrong password ${i}`, mac: macOf(100 + i) }),
      ),
    );
    const tally = (node?: NodeName): Record<string, number> => {
      const out: Record<string, number> = {};
      answers.forEach((a, i) => {
        if (node && attempts[i]!.node !== node) return;
        const k = a.status === 'ok' ? 'ok' : String((a as { error?: string }).error);
        out[k] = (out[k] ?? 0) + 1;
      });
      return out;
    };
    t.same(tally(), { ok: LOCKOUT, E_RATE_LIMITED: FLOOD - LOCKOUT }, `exactly ${LOCKOUT} attempts were carried out, the rest refused`);
    const onA = tally('A');
    const onB = tally('B');
    t.comment(`carried out on A: ${onA.ok ?? 0}, on B: ${onB.ok ?? 0}; refused on A: ${onA.E_RATE_LIMITED ?? 0}, on B: ${onB.E_RATE_LIMITED ?? 0}`);
    t.ok((onA.E_RATE_LIMITED ?? 0) > 0 && (onB.E_RATE_LIMITED ?? 0) > 0, 'both nodes refused some: the count is shared, not per node');

    // The audit rows of the attempts carried out are group-committed after the answer.
    let rows: Array<{ ip: string; detail: string }> = [];
    for (let i = 0; i < 50; i++) {
      rows = (
        await c.db((db) =>
          db.query<{ ip: string; detail: string }>(`SELECT ip, detail FROM audit WHERE action = 'passcode.request' AND outcome = 'failure' AND email = $1`, [ALICE.email]),
        )
      ).rows;
      if (rows.length >= LOCKOUT) break;
      await sleep(100);
    }
    t.equal(rows.length, LOCKOUT, `${LOCKOUT} failed passcode requests in the shared audit trail`);
    t.ok(
      rows.every((r) => ADDRESSES.includes(r.ip) && /bad-password/.test(r.detail)),
      'each a wrong password from one of the flooding addresses',
    );
    const locked = await c.db((db) => db.query<{ until: string }>(`SELECT until FROM counters WHERE key LIKE 'a:%' AND until > $1`, [Date.now()]));
    t.equal(locked.rows.length, 1, 'one account counter, locked, in the shared database');

    // Both nodes now refuse the account from a new address, even with the right password.
    for (const node of ['A', 'B'] as const) {
      const fresh = await c.connect(node, '127.0.0.9');
      const res = await fresh.requestPasscode({ email: ALICE.email, password: ALICE.password, mac: macOf(200) });
      t.match(res, { status: 'error', error: 'E_RATE_LIMITED', retryAfterSeconds: Number }, `node ${node} refuses the locked account`);
      const login = await fresh.login({ email: ALICE.email, phone: ALICE.phone, password: ALICE.password, passcode: 'AAAAAA', mac: macOf(200) });
      t.match(login, { status: 'error', error: 'E_RATE_LIMITED' }, `node ${node} refuses passcode.auth for it too`);
    }

    // The owner's address, known from a completed login, is not held by the lockout (only by its
    // own backoff): an attacker with the email cannot keep the owner out. Through node B.
    const again = await c.login('B', ALICE, macOf(2));
    t.ok(again.token, "the owner still logs in from the address of an earlier login, on the other node");
    t.not(again.token, owner.token);
  });
}
