// One node killed outright (SIGKILL: no shutdown, its database connections simply vanish) while the
// other keeps serving the sessions it made; the killed node restarts on the same database and
// serves again.
import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { ALICE, BOB, check, macOf, propagation, sleep, startCluster, type Held } from '../helpers/cluster.js';

const c = await startCluster(t, { name: 'failover', users: [ALICE, BOB] });
if (c) {
  /** Checks every session through `client` back to back until `stop`, tallying the answers. */
  const load = (client: HellwallClient, sessions: readonly Held[]): { stop(): Promise<Record<string, number>> } => {
    let running = true;
    const tally: Record<string, number> = {};
    const loop = (async () => {
      while (running) {
        const answers = await Promise.all(sessions.map((s) => check(client, s).catch((err: Error) => ({ status: `throw ${err.message}` }))));
        for (const a of answers) {
          const k = a.status === 'error' ? `error ${(a as { error?: string }).error}` : a.status;
          tally[k] = (tally[k] ?? 0) + 1;
        }
      }
    })();
    return {
      async stop() {
        running = false;
        await loop;
        return tally;
      },
    };
  };

  t.test('node B keeps serving sessions made on node A while A is SIGKILLed, and A serves again after a restart', async (t) => {
    const onA = await Promise.all([c.login('A', ALICE, macOf(1)), c.login('A', BOB, macOf(2))]);
    onA.push(await c.login('A', ALICE, macOf(3)));
    const clientB = await c.connect('B');
    for (const s of onA) t.equal((await check(clientB, s)).status, 'authorized', 'B authorizes a session made on A');

    const traffic = load(await c.connect('B'), onA);
    await sleep(200);
    const killedAt = Date.now();
    await c.kill('A', 'SIGKILL');
    t.equal(c.node('A').child.signalCode, 'SIGKILL', 'node A is gone');
    // B goes on serving; a session made on B meanwhile is in the shared database for A to find later.
    await sleep(500);
    const madeOnB = await c.login('B', ALICE, macOf(4));
    t.equal((await check(clientB, madeOnB)).status, 'authorized', 'B logs operators in while A is down');
    await sleep(300);
    const tally = await traffic.stop();
    t.comment(`B answered ${JSON.stringify(tally)} over ${Date.now() - killedAt} ms around the kill`);
    t.same(Object.keys(tally), ['authorized'], 'every check on B was authorized: no error, no refusal');
    t.ok(tally.authorized! > 3 * onA.length, 'and B answered throughout');
    t.equal(c.node('B').child.exitCode, null, 'node B is still running');

    const restarted = await c.start('A');
    t.ok(restarted.port > 0, 'node A restarts on the same database and data directory');
    const clientA = await c.connect('A');
    for (const s of [...onA, madeOnB]) t.equal((await check(clientA, s)).status, 'authorized', 'the restarted A authorizes every session, its own and B\'s');

    // The restarted node hears the other's revocations again (its change feed is up).
    t.equal((await check(clientA, onA[0]!)).status, 'authorized', 'the restarted A caches the session');
    const p = await propagation(clientA, onA[0]!, async () => {
      const res = await clientB.logout({ token: onA[0]!.token, mac: onA[0]!.mac });
      if (res.status !== 'ok') throw new Error(JSON.stringify(res));
    });
    t.ok(p.ms < 100, `a logout on B is refused by the restarted A ${p.ms.toFixed(2)} ms after the acknowledgement`);
    const fresh = await c.login('A', BOB, macOf(5));
    t.equal((await check(clientB, fresh)).status, 'authorized', 'and a login on the restarted A checks on B');
  });
}
