import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import t, { type Test } from 'tap';
import { POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres-migrations.js';
import { openPostgresStore, parseChangePayload, type PostgresStoreOptions } from '../../src/store/postgres-store.js';
import {
  StoreBusyError,
  StoreConfigError,
  StoreUnavailableError,
  type Store,
  type StoreChange,
  type StoreOps,
} from '../../src/store/store.js';
import { pgOrSkip, type PgCluster } from '../helpers/postgres.js';

// What PostgreSQL itself adds to the shared behaviour (test/store/conformance-postgres.test.ts):
// migrations under an advisory lock, errors at open, LISTEN/NOTIFY between nodes and its loss,
// advisory locks, and the pool's limits.

const NOW = Date.UTC(2026, 10, 21);
const HOUR = 3_600_000;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function open(t: Test, url: string, opts: Partial<PostgresStoreOptions> = {}): Promise<Store> {
  const store = await openPostgresStore({ url, ...opts });
  t.teardown(() => store.close());
  return store;
}

let serial = 0;
async function addUser(store: StoreOps): Promise<number> {
  const email = `pg${++serial}@example.com`;
  return (await store.createUser({ email, phone: '+1555', role: 'user', passwordHash: 'h', createdAt: NOW })).id;
}

async function addSession(store: StoreOps, userId: number): Promise<{ id: number; master: Buffer }> {
  const master = Buffer.alloc(32);
  master.writeUInt32BE(++serial);
  master.writeUInt32BE(process.pid, 4);
  const id = await store.createSession({ userId, master, mac: 'm', ip: '192.0.2.1', createdAt: NOW, expiresAt: NOW + HOUR, absoluteExpiresAt: NOW + 24 * HOUR, keyId: 1 });
  return { id, master };
}

/** Records every change a store announces, with when it arrived. */
function record(store: Store): { events: Array<{ change: StoreChange; at: number }>; waitFor(match: (c: StoreChange) => boolean, ms: number): Promise<number | undefined> } {
  const events: Array<{ change: StoreChange; at: number }> = [];
  const waiters: Array<() => void> = [];
  store.onChange((change) => {
    events.push({ change, at: performance.now() });
    for (const w of waiters.splice(0)) w();
  });
  return {
    events,
    /** Resolves with the arrival time of the first matching change (seen already or to come), or undefined after `ms`. */
    async waitFor(match, ms) {
      const deadline = performance.now() + ms;
      for (;;) {
        const found = events.find((e) => match(e.change));
        if (found) return found.at;
        const left = deadline - performance.now();
        if (left <= 0) return undefined;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
}

/** Polls `cond` every 20 ms for up to `ms`; answers whether it became true. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * A TCP proxy to the cluster that can go silent: `freeze` stops forwarding in both directions
 * without closing anything (a dead link as a cut cable or a lost route makes it), `thaw` drops the
 * frozen connections and forwards new ones again.
 */
async function silentProxy(t: Test, port: number): Promise<{ port: number; freeze(): void; thaw(): void }> {
  let frozen = false;
  const links = new Set<{ client: net.Socket; upstream: net.Socket | undefined }>();
  const server = net.createServer((client) => {
    const link = { client, upstream: frozen ? undefined : net.connect(port, '127.0.0.1') };
    links.add(link);
    client.on('error', () => undefined);
    client.on('close', () => {
      link.upstream?.destroy();
      links.delete(link);
    });
    if (!link.upstream) return; // accepted, never answered
    link.upstream.on('error', () => undefined);
    link.upstream.on('close', () => client.destroy());
    client.pipe(link.upstream);
    link.upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const l of links) l.client.destroy();
    server.close();
  });
  return {
    port: (server.address() as AddressInfo).port,
    freeze() {
      frozen = true;
      for (const { client, upstream } of links) {
        if (!upstream) continue;
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const l of links) l.client.destroy();
    },
  };
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

const cluster = await pgOrSkip(t, { name: 'pgstore', tls: true });
if (cluster) await suite(cluster);

async function suite(cluster: PgCluster): Promise<void> {
  t.test('runs each migration once when four nodes open one empty database together', async (t) => {
    const url = await cluster.createDatabase();
    const stores = await Promise.all([1, 2, 3, 4].map(() => open(t, url)));
    for (const s of stores) t.equal(await s.schemaVersion(), POSTGRES_SCHEMA_VERSION);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    t.teardown(() => c.end());
    const rows = (await c.query('SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version')).rows;
    t.strictSame(
      rows,
      Array.from({ length: POSTGRES_SCHEMA_VERSION }, (_, i) => ({ version: i + 1, n: 1 })),
      'one row per migration',
    );
    await stores[0]!.close();
    const again = await open(t, url);
    t.equal(await again.schemaVersion(), POSTGRES_SCHEMA_VERSION, 'reopening migrates nothing');
  });

  t.test('refuses a database whose schema is newer than this code, naming both versions', async (t) => {
    const url = await cluster.createDatabase();
    await (await openPostgresStore({ url })).close();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)`);
    await c.end();
    const err = await rejection(openPostgresStore({ url }));
    t.type(err, StoreConfigError);
    t.match(err.message, /version 999/);
    t.match(err.message, new RegExp(`version ${POSTGRES_SCHEMA_VERSION}\\b`));
  });

  t.test('names the URL without its password and the cause when it cannot open', async (t) => {
    const good = new URL(cluster.url);
    const wrong = new URL(cluster.url);
    wrong.password = 'not-the-password-x9';
    const wrongPassword = await rejection(openPostgresStore({ url: wrong.toString() }));
    t.type(wrongPassword, StoreConfigError);
    t.match(wrongPassword.message, /password authentication failed for user "hellwall"/);
    t.match(wrongPassword.message, `127.0.0.1:${cluster.port}`);
    t.match(wrongPassword.message, 'hellwall:***@');
    t.notMatch(wrongPassword.message, 'not-the-password-x9');

    const refusedUrl = new URL(cluster.url);
    refusedUrl.port = String(await deadPort());
    const refused = await rejection(openPostgresStore({ url: refusedUrl.toString() }));
    t.type(refused, StoreConfigError);
    t.match(refused.message, /connection refused/);
    t.notMatch(refused.message, cluster.password);

    const missing = new URL(cluster.url);
    missing.pathname = '/no_such_db';
    const noDb = await rejection(openPostgresStore({ url: missing.toString() }));
    t.type(noDb, StoreConfigError);
    t.match(noDb.message, /database "no_such_db" does not exist/);
    t.notMatch(noDb.message, cluster.password);

    // A server that accepts and never answers.
    const accepted: net.Socket[] = [];
    const silent = net.createServer((socket) => void accepted.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      for (const socket of accepted) socket.destroy();
      silent.close();
    });
    const silentUrl = new URL(cluster.url);
    silentUrl.port = String((silent.address() as AddressInfo).port);
    const started = Date.now();
    const timeout = await rejection(openPostgresStore({ url: silentUrl.toString(), connectTimeoutMs: 300 }));
    t.type(timeout, StoreConfigError);
    t.match(timeout.message, /timeout/);
    t.ok(Date.now() - started < 5000, 'gives up after about connectTimeoutMs');

    t.type(await rejection(openPostgresStore({ url: 'not a url' })), StoreConfigError);
    t.type(await rejection(openPostgresStore({ url: good.toString().replace('postgres:', 'mysql:') })), StoreConfigError);
    t.type(await rejection(openPostgresStore({ url: good.toString(), channel: 'Bad Channel;' })), StoreConfigError);
  });

  t.test('connects over TLS when the URL asks, checking the certificate against sslrootcert', async (t) => {
    const url = new URL(await cluster.createDatabase());
    url.searchParams.set('sslmode', 'verify-full');
    url.searchParams.set('sslrootcert', cluster.caFile!);
    const store = await open(t, url.toString());
    await store.ping();
    const check = new pg.Client({ connectionString: url.toString() });
    await check.connect();
    t.teardown(() => check.end());
    const { rows } = await check.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
       WHERE a.application_name = 'hellwall' AND a.datname = current_database() AND s.ssl`,
    );
    t.ok(rows[0]!.n >= 2, `the change feed and the pool are encrypted (${rows[0]!.n} connections)`);

    const unverified = new URL(url);
    unverified.searchParams.delete('sslrootcert');
    const err = await rejection(openPostgresStore({ url: unverified.toString() }));
    t.type(err, StoreConfigError, 'a certificate it cannot verify is refused at open');
    t.match(err.message, /certificate/);
    t.notMatch(err.message, cluster.password);
  });

  t.test('announces a change committed on one node to another within 100 ms (p50/p99 over 200)', async (t) => {
    const url = await cluster.createDatabase();
    const a = await open(t, url);
    const b = await open(t, url);
    const heardOnB = record(b);
    const heardOnA = record(a);
    const user = await addUser(a);
    const sessions: Array<{ id: number }> = [];
    for (let i = 0; i < 200; i++) sessions.push(await addSession(a, user));

    const latencies: number[] = [];
    for (const s of sessions) {
      await a.revokeSession(s.id, NOW, 'logout');
      const acknowledged = performance.now();
      const at = await heardOnB.waitFor((c) => c.kind === 'session' && c.id === s.id, 1000);
      if (at === undefined) {
        t.fail(`session ${s.id}'s revocation never reached the other node`);
        return;
      }
      latencies.push(Math.max(0, at - acknowledged));
    }
    latencies.sort((x, y) => x - y);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    t.comment(`revocation announced on another node after commit: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${latencies.at(-1)!.toFixed(2)} ms`);
    // The median holds the mechanism to its bound; the tail also measures this machine's load
    // (test files run in parallel on two cores), so it is reported, and only bounded loosely.
    t.ok(p50 < 100, `p50 ${p50.toFixed(1)} ms is under 100 ms`);
    t.ok(p99 < 1000, `p99 ${p99.toFixed(1)} ms is under a second`);
    t.ok(
      sessions.every((s) => heardOnA.events.some((e) => e.change.kind === 'session' && e.change.id === s.id)),
      'the committing node hears its own changes too',
    );

    // A transaction: announced on commit only, nothing of a rollback.
    const s1 = await addSession(a, user);
    const s2 = await addSession(a, user);
    heardOnB.events.length = 0;
    await a
      .transaction(async (tx) => {
        await tx.revokeSession(s1.id, NOW, 'logout');
        throw new Error('changed my mind');
      })
      .catch(() => undefined);
    await a.transaction(async (tx) => {
      await tx.revokeSession(s2.id, NOW, 'logout');
      await tx.setUserRole(user, 'admin');
      await sleep(150);
      t.strictSame(heardOnB.events, [], 'nothing is heard before the commit');
    });
    t.ok(await heardOnB.waitFor((c) => c.kind === 'session' && c.id === s2.id, 1000), 'the committed revocation is heard');
    t.ok(await heardOnB.waitFor((c) => c.kind === 'user' && c.id === user, 1000), 'the committed role change is heard');
    t.notOk(heardOnB.events.some((e) => e.change.kind === 'session' && e.change.id === s1.id), 'the rolled-back revocation is not');

    // Housekeeping names the sessions it deleted (packed into few notifications), not `all`.
    const dead = await Promise.all(Array.from({ length: 3 }, () => addSession(a, user)));
    heardOnB.events.length = 0;
    const counts = await a.deleteExpired(NOW + 48 * HOUR, { idleMs: HOUR, keepRevokedMs: 0, batch: 1000 });
    t.ok(counts.sessions >= dead.length);
    for (const s of dead) t.ok(await heardOnB.waitFor((c) => c.kind === 'session' && c.id === s.id, 1000), `deleted session ${s.id} is announced`);
    t.notOk(heardOnB.events.some((e) => e.change.kind === 'all'), 'without clearing whole caches');
  });

  t.test('notices a silently dead link to the database within two heartbeats, and recovers', async (t) => {
    const direct = new URL(await cluster.createDatabase());
    const relay = await silentProxy(t, cluster.port);
    const viaProxy = new URL(direct);
    viaProxy.port = String(relay.port);
    const store = await open(t, viaProxy.toString(), { heartbeatMs: 300, connectTimeoutMs: 500, statementTimeoutMs: 500 });
    const heard = record(store);
    t.equal(store.coherent, true);
    const cut = Date.now();
    relay.freeze();
    t.ok(await until(() => !store.coherent, 3000), 'no longer coherent');
    t.comment(`dead link noticed after ${Date.now() - cut} ms (heartbeat 300 ms)`);
    t.ok(heard.events.some((e) => e.change.kind === 'all'), 'listeners were told `all`');
    t.type(await rejection(store.ping()), StoreUnavailableError, 'a query on the dead link is unavailable, not a hang');
    relay.thaw();
    t.ok(await until(() => store.coherent, 10_000), 'coherent again once the link is back');
    await store.ping();
  });

  t.test('parses notifications, and takes anything unexpected for `all`', async (t) => {
    t.strictSame(parseChangePayload('s:7'), [{ kind: 'session', id: 7 }]);
    t.strictSame(parseChangePayload('s:1,2'), [{ kind: 'session', id: 1 }, { kind: 'session', id: 2 }]);
    t.strictSame(parseChangePayload('u:3'), [{ kind: 'user', id: 3 }]);
    t.strictSame(parseChangePayload('*'), [{ kind: 'all' }]);
    t.strictSame(parseChangePayload('x:1'), [{ kind: 'all' }]);
    t.strictSame(parseChangePayload(''), [{ kind: 'all' }]);
  });

  t.test('lets only one node at a time run an exclusive task of one name', async (t) => {
    const url = await cluster.createDatabase();
    const a = await open(t, url);
    const b = await open(t, url);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = a.exclusive('housekeeping', async () => {
      entered();
      await held;
      return 'a ran';
    });
    await inside;
    t.equal(await b.exclusive('housekeeping', async () => 'b ran'), undefined, 'the other node is refused while it runs');
    t.equal(await a.exclusive('housekeeping', async () => 'a again'), undefined, 'and so is the same node');
    t.equal(await b.exclusive('other task', async () => 'b other'), 'b other', 'another name runs');
    release();
    t.equal(await first, 'a ran');
    t.equal(await b.exclusive('housekeeping', async () => 'b ran'), 'b ran', 'free again once it ended');
    const failed = await rejection(a.exclusive('housekeeping', async () => Promise.reject(new Error('task failed'))));
    t.equal(failed.message, 'task failed', "the task's error is rethrown");
    t.equal(await b.exclusive('housekeeping', async () => 'b ran'), 'b ran', 'and the lock released after it');
  });

  t.test('counts 200 concurrent hits from two nodes exactly', async (t) => {
    const url = await cluster.createDatabase();
    const a = await open(t, url);
    const b = await open(t, url);
    const key = 'login:ip:192.0.2.9';
    const counts = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).hitCounters([key, 'login:account:x'], NOW, NOW + HOUR).then((r) => r[0]!.count)),
    );
    t.strictSame([...counts].sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i + 1), 'each count 1..200 answered once');
    t.equal((await a.readCounters([key], NOW))[0]?.count, 200);
    t.equal((await b.readCounters(['login:account:x'], NOW))[0]?.count, 200, 'several keys per hit, in any order, without deadlock');
  });

  t.test('answers busy when a row stays locked past the statement timeout, and never commits half a transaction', async (t) => {
    const url = await cluster.createDatabase();
    const a = await open(t, url);
    const b = await open(t, url, { statementTimeoutMs: 300 });
    const user = await addUser(a);
    const s = await addSession(a, user);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const holder = a.transaction(async (tx) => {
      await tx.findSessionById(s.id);
      locked();
      await held;
    });
    await isLocked;
    t.equal(await b.touchSession(s.id, NOW + 1), false, 'touching a locked session skips it at once');
    const busy = await rejection(b.revokeSession(s.id, NOW, 'logout'));
    t.type(busy, StoreBusyError, 'a revocation waiting beyond the timeout is busy');
    // The caller swallows the failure and goes on: the commit must not pretend to succeed.
    const swallowed = await rejection(
      b.transaction(async (tx) => {
        await tx.revokeSession(s.id, NOW, 'logout').catch(() => undefined);
        await tx.setUserRole(user, 'admin').catch(() => undefined);
      }),
    );
    t.type(swallowed, StoreBusyError, 'a transaction in which a statement failed rejects at commit');
    release();
    await holder;
    t.equal((await a.findUserById(user))?.role, 'user', 'and nothing of it was committed');
    t.equal(await b.touchSession(s.id, NOW + 2), true, 'touching works once the lock is gone');
    t.equal((await a.findSessionById(s.id))?.lastSeenAt, NOW + 2);
  });

  t.test('reports an exhausted pool as unavailable after connectTimeoutMs', async (t) => {
    const url = await cluster.createDatabase();
    const store = await open(t, url, { poolMax: 1, connectTimeoutMs: 300 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holder = store.transaction(async () => {
      entered();
      await held;
    });
    await inside;
    const started = Date.now();
    const err = await rejection(store.ping());
    t.type(err, StoreUnavailableError);
    t.match(err.message, /pool exhausted/);
    t.ok(Date.now() - started < 3000, 'after about connectTimeoutMs');
    release();
    await holder;
    await store.ping();
    t.pass('and works again once a connection is free');
  });

  t.test('keeps the created user usable in a transaction after a duplicate', async (t) => {
    const url = await cluster.createDatabase();
    const store = await open(t, url);
    const id = await store.transaction(async (tx) => {
      const user = await tx.createUser({ email: 'dup@example.com', phone: '1', role: 'user', passwordHash: 'h', createdAt: NOW });
      await tx.createUser({ email: 'dup@example.com', phone: '1', role: 'user', passwordHash: 'h', createdAt: NOW }).catch(() => undefined);
      await tx.setUserRole(user.id, 'admin');
      return user.id;
    });
    t.equal((await store.findUserById(id))?.role, 'admin', 'the transaction committed whole');
  });

  t.test('rejects calls after close as unavailable, and closes twice', async (t) => {
    const url = await cluster.createDatabase();
    const store = await openPostgresStore({ url });
    await store.close();
    await store.close();
    t.type(await rejection(store.ping()), StoreUnavailableError);
    t.equal(store.coherent, false);
  });
}

// Its own cluster: stopping the server must not disturb the other tests.
t.test('survives the database going away and comes back by itself', async (t) => {
  const outage = await pgOrSkip(t, { name: 'outage' });
  if (!outage) return;
  const timeouts = { connectTimeoutMs: 1000, statementTimeoutMs: 1000, heartbeatMs: 500 };
  const a = await open(t, outage.url, timeouts);
  const b = await open(t, outage.url, timeouts);
  const heardOnA = record(a);
  const user = await addUser(a);
  const s = await addSession(a, user);
  t.equal(a.coherent, true);

  await outage.stopServer();
  t.ok(await until(() => !a.coherent, 5000), 'the store is no longer coherent');
  t.ok(heardOnA.events.some((e) => e.change.kind === 'all'), 'and has told its listeners `all`');
  for (const [what, call] of [
    ['a read', () => a.findSessionByMaster(s.master)],
    ['a write', () => a.revokeSession(s.id, NOW, 'logout')],
    ['a transaction', () => a.transaction((tx) => tx.findSessionById(s.id))],
    ['ping', () => a.ping()],
    ['a counter', () => a.hitCounters(['k'], NOW, NOW + HOUR)],
  ] as const) {
    const started = Date.now();
    const err = await rejection(call());
    t.type(err, StoreUnavailableError, `${what} is refused as unavailable (${err.message})`);
    t.ok(Date.now() - started < 8000, `${what} answers within the timeouts, not a hang`);
  }

  heardOnA.events.length = 0;
  await outage.startServer();
  t.ok(await until(() => a.coherent && b.coherent, 10_000), 'both stores are coherent again by themselves');
  t.ok(heardOnA.events.some((e) => e.change.kind === 'all'), 'and have told their listeners `all` again');
  t.equal((await a.findSessionByMaster(s.master))?.revokedAt, null, 'reads work again');
  const heardOnB = record(b);
  t.equal(await a.revokeSession(s.id, NOW, 'logout'), true, 'writes too');
  t.ok(await heardOnB.waitFor((c) => c.kind === 'session' && c.id === s.id, 1000), 'and other nodes hear them again');
});
