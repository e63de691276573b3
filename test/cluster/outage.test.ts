// The database stopped and started again under load: while it is down every check the nodes cannot
// vouch for answers E_BUSY (never `authorized` for an unknown or revoked token, never a crash),
// /readyz says not ready, and both nodes recover by themselves when it returns, with every session
// acknowledged before the outage intact.
import t from 'tap';
import type { HellwallClient } from '../../src/client/client.js';
import { ALICE, BOB, check, macOf, propagation, sleep, startCluster, type Held, type NodeName } from '../helpers/cluster.js';
import { httpGet } from '../helpers/http.js';

const RECOVERY_MS = 5000;

const c = await startCluster(t, { name: 'outage', users: [ALICE, BOB] });
if (c) {
  type Kind = 'valid' | 'revoked' | 'unknown';
  /** Checks every (kind, session) through `client` in rounds until `stop`, tallying by kind. */
  const load = (client: HellwallClient, sessions: ReadonlyArray<[Kind, Held]>) => {
    let running = true;
    const tally: Record<Kind, Record<string, number>> = { valid: {}, revoked: {}, unknown: {} };
    const loop = (async () => {
      while (running) {
        const answers = await Promise.all(sessions.map(([, s]) => check(client, s).catch((err: Error) => ({ status: `throw: ${err.message}` }))));
        answers.forEach((a, i) => {
          const k = a.status === 'error' ? (a as { error?: string }).error! : a.status;
          const bucket = tally[sessions[i]![0]];
          bucket[k] = (bucket[k] ?? 0) + 1;
        });
        // A round every few ms: load, without a spin of instant E_BUSY answers starving the machine.
        await sleep(5);
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
  const ready = async (node: NodeName): Promise<{ status: number; body: string }> => httpGet(c.node(node).opsPort, '/readyz');
  const alive = (node: NodeName): boolean => c.node(node).child.exitCode === null && c.node(node).child.signalCode === null;

  t.test('the database stopped and restarted under load: E_BUSY, not ready, no crash, then recovery by itself', async (t) => {
    t.ok(c.node('A').opsPort > 0 && c.node('B').opsPort > 0, 'both ops ports are known from the log');
    const valid = [
      await c.login('A', ALICE, macOf(1)),
      await c.login('B', BOB, macOf(2)),
      await c.login('B', ALICE, macOf(3)),
      await c.login('A', BOB, macOf(4)),
    ];
    const revoked = await c.login('A', ALICE, macOf(5));
    // A session never checked on B: not in B's cache when the database goes.
    const unseen = await c.login('A', BOB, macOf(6));
    const clients = { A: await c.connect('A'), B: await c.connect('B') };
    for (const node of ['A', 'B'] as const) {
      for (const [i, s] of [...valid, revoked].entries()) t.equal((await check(clients[node], s)).status, 'authorized', `node ${node} authorizes (and caches) session ${i}`);
    }
    // One session logged out on A before the outage; B refuses it within the bound (its cache had it).
    const out = await propagation(clients.B, revoked, async () => {
      const res = await clients.A.logout({ token: revoked.token, mac: revoked.mac });
      if (res.status !== 'ok') throw new Error(JSON.stringify(res));
    });
    t.ok(out.ms < 100, `one session logged out on A before the outage; B refused it ${out.ms.toFixed(2)} ms after the acknowledgement`);
    const unknown: Held = { ...valid[0]!, mac: macOf(99) };
    for (const node of ['A', 'B'] as const) {
      t.equal((await check(clients[node], revoked)).status, 'unauthorized', `node ${node} refuses the logged-out session`);
      t.equal((await ready(node)).status, 200, `node ${node} is ready before the outage`);
    }

    const mix: Array<[Kind, Held]> = [...valid.map((s): [Kind, Held] => ['valid', s]), ['revoked', revoked], ['unknown', unknown]];
    const traffic = { A: load(await c.connect('A'), mix), B: load(await c.connect('B'), mix) };
    await sleep(300);

    await c.pg.stopServer();
    const downAt = Date.now();
    for (const node of ['A', 'B'] as const) {
      let res = await check(clients[node], unseen);
      for (let i = 0; i < 100 && res.status !== 'error'; i++) {
        await sleep(50);
        res = await check(clients[node], unseen);
      }
      t.match(res, { status: 'error', error: 'E_BUSY' }, `node ${node} answers E_BUSY for a session it cannot look up`);
      t.match(await check(clients[node], revoked), { status: 'error', error: 'E_BUSY' }, `node ${node}: the revoked session is not authorized from a cache`);
      const r = await ready(node);
      t.equal(r.status, 503, `node ${node}: /readyz says not ready`);
      t.match(JSON.parse(r.body), { ready: false, failing: { database: String } }, 'naming the database');
    }
    await sleep(1000);
    t.ok(alive('A') && alive('B'), `both processes alive ${Date.now() - downAt} ms into the outage`);

    await c.pg.startServer();
    const upAt = Date.now();
    const recovered: Record<NodeName, number> = { A: NaN, B: NaN };
    await Promise.all(
      (['A', 'B'] as const).map(async (node) => {
        while (Date.now() - upAt < RECOVERY_MS * 2) {
          const answers = await Promise.all([...valid, unseen].map((s) => check(clients[node], s)));
          if (answers.every((a) => a.status === 'authorized')) {
            recovered[node] = Date.now() - upAt;
            return;
          }
          await sleep(50);
        }
      }),
    );
    t.comment(`outage ${upAt - downAt} ms; recovered after the database returned: A ${recovered.A} ms, B ${recovered.B} ms`);
    for (const node of ['A', 'B'] as const) {
      t.ok(recovered[node] < RECOVERY_MS, `node ${node} authorizes every session acknowledged before the outage within ${RECOVERY_MS} ms`);
      let r = await ready(node);
      for (let i = 0; i < 40 && r.status !== 200; i++) {
        await sleep(50);
        r = await ready(node);
      }
      t.equal(r.status, 200, `node ${node} is ready again`);
    }
    await sleep(200);
    const tallies = { A: await traffic.A.stop(), B: await traffic.B.stop() };
    t.comment(`answers under load: ${JSON.stringify(tallies)}`);
    for (const node of ['A', 'B'] as const) {
      const tally = tallies[node];
      t.same(Object.keys(tally.valid).filter((k) => k !== 'authorized' && k !== 'E_BUSY'), [], `node ${node}: live sessions were authorized or E_BUSY, nothing else`);
      t.ok((tally.valid.E_BUSY ?? 0) > 0, `node ${node}: and E_BUSY did happen under load`);
      t.notOk(tally.revoked.authorized, `node ${node}: never authorized the revoked session`);
      t.notOk(tally.unknown.authorized, `node ${node}: never authorized an unknown binding`);
      t.same(Object.keys(tally.revoked).filter((k) => k !== 'unauthorized' && k !== 'E_BUSY'), [], `node ${node}: revoked: unauthorized or E_BUSY only`);
      t.same(Object.keys(tally.unknown).filter((k) => k !== 'unauthorized' && k !== 'E_BUSY'), [], `node ${node}: unknown: unauthorized or E_BUSY only`);
      t.ok(alive(node), `node ${node} never exited`);
    }

    for (const node of ['A', 'B'] as const) t.equal((await check(clients[node], revoked)).status, 'unauthorized', `node ${node}: the logout before the outage still holds`);
    // Each node's change feed is back: a revocation on one is honoured by the other within the bound.
    t.equal((await check(clients.B, valid[0]!)).status, 'authorized', 'B has the session in its cache again');
    const p = await propagation(clients.B, valid[0]!, async () => {
      const res = await clients.A.logout({ token: valid[0]!.token, mac: valid[0]!.mac });
      if (res.status !== 'ok') throw new Error(JSON.stringify(res));
    });
    t.ok(p.ms < 100, `after the outage, a logout on A is refused on B ${p.ms.toFixed(2)} ms after the acknowledgement`);
    const fresh = await c.login('B', ALICE, macOf(7));
    t.equal((await check(clients.A, fresh)).status, 'authorized', 'a login on B after the outage checks on A');
  });
}
