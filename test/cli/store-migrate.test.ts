import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import t, { type Test } from 'tap';
import { createApp, type App } from '../../src/app.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import type { Config } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { migrateSqliteToPostgres, MIGRATED_TABLES, StoreMigrateError } from '../../src/store/migrate-sqlite-to-postgres.js';
import { POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres-migrations.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import { migrate, openSqliteStore } from '../../src/store/sqlite-store.js';
import type { Store } from '../../src/store/store.js';
import { ALICE, MAC, startHarness, TEST_SCRYPT, type Harness } from '../helpers/harness.js';
import { LogSink } from '../helpers/log-sink.js';
import { pgOrSkip } from '../helpers/postgres.js';
import { passcodeFrom } from '../helpers/smtp-sink.js';
import { enrolTotp, recoveryPasscode } from '../helpers/totp.js';

const HOUR = 3_600_000;
const BOB = { email: 'bob@example.com', phone: '+1 555 0101', password: 'another horse battery staple', role: 'admin' };
const CAROL = { email: 'carol@example.com', phone: '+1 555 0102', password: 'third horse battery staple', role: 'user' };
const DAVE = { email: 'dave@example.com', phone: '+1 555 0103', password: 'fourth horse battery staple', role: 'user' };
const BOB_MAC = '00:1a:2b:3c:4d:5f';
const SQLITE_SCHEMA = MIGRATIONS.at(-1)!.version;

const cluster = await pgOrSkip(t, { name: 'migrate' });

/** `hellwall store …` in this process, with its stdout and stderr captured. */
function store(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return runCli(['store', ...args], env);
}

/** The CLI's environment: the data directory, and no log lines on the test's stdout. */
function cliEnv(dataDir: string, more: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { HELLWALL_DATA_DIR: dataDir, HELLWALL_LOG_LEVEL: 'silent', ...more };
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-migrate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A data directory whose database holds one user (and whatever `more` adds), made by the store. */
async function smallDataDir(t: Test, more?: (store: Store, userId: number) => Promise<void>): Promise<string> {
  const dir = tempDir(t);
  const s = openSqliteStore(path.join(dir, 'hellwall.db'));
  const user = await s.createUser({ email: 'ops@example.com', phone: '+1555', role: 'user', passwordHash: 'h', createdAt: 1 });
  await s.appendAudit([{ at: 2, action: 'login', outcome: 'success', userId: user.id, email: user.email }]);
  await more?.(s, user.id);
  await s.close();
  return dir;
}

type Row = Record<string, unknown>;

/** Values as both drivers can be compared: booleans as 0/1 (SQLite's), bytes as hex. */
function normalize(row: Row): Row {
  return Object.fromEntries(
    Object.entries(row).map(([k, v]) => [k, typeof v === 'boolean' ? Number(v) : Buffer.isBuffer(v) ? v.toString('hex') : v]),
  );
}

function sqliteRows(dataDir: string): Record<string, Row[]> {
  const db = new Database(path.join(dataDir, 'hellwall.db'), { readonly: true });
  try {
    return Object.fromEntries(MIGRATED_TABLES.map((table) => [table, (db.prepare(`SELECT * FROM ${table} ORDER BY 1`).all() as Row[]).map(normalize)]));
  } finally {
    db.close();
  }
}

/** A plain connection (BIGINT as numbers) for looking at the target from outside the store. */
async function withPg<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({
    connectionString: url,
    types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? Number : pg.types.getTypeParser(oid, format))) as pg.CustomTypesConfig['getTypeParser'] },
  });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

async function postgresRows(url: string): Promise<Record<string, Row[]>> {
  return withPg(url, async (c) => {
    const out: Record<string, Row[]> = {};
    for (const table of MIGRATED_TABLES) out[table] = (await c.query<Row>(`SELECT * FROM ${table} ORDER BY 1`)).rows.map(normalize);
    return out;
  });
}

/** Whether the target has the store's tables at all (a refusal before the copy must not create them). */
async function hasTables(url: string): Promise<boolean> {
  return withPg(url, async (c) => (await c.query<{ v: string | null }>("SELECT to_regclass('users')::text AS v")).rows[0]!.v !== null);
}

async function userCount(url: string): Promise<number> {
  return withPg(url, async (c) => (await c.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]!.n);
}

/**
 * A data directory filled through the running service (real TLS and mail): three operators, one of
 * them then deleted (so SQLite's id counter is above the highest id left); Alice logged in and
 * renewed (a retired token), a second passcode pending; Bob logged in and out; a failed passcode
 * request (shared counters); the audit trail of all of it. The server is stopped at the end.
 */
async function filledDataDir(t: Test): Promise<{ h: Harness; oldToken: string; renewedToken: string; bobToken: string; carolId: number }> {
  const h = await startHarness(t, { users: [ALICE, BOB] });
  const carol = await h.app.addUser(CAROL);
  const client = await h.connect();
  const alice = await h.login(client);
  h.clock.advance(HOUR);
  const renewed = await client.check({ token: alice.token, mac: MAC, request: 'inventory.read' });
  if (renewed.status !== 'renew') throw new Error(`no renewal: ${JSON.stringify(renewed)}`);
  const bob = await h.login(client, BOB, BOB_MAC);
  const bobOut = await client.logout({ token: bob.token, mac: BOB_MAC });
  if (bobOut.status !== 'ok') throw new Error(`no logout: ${JSON.stringify(bobOut)}`);
  await h.requestPasscode(client);
  await client.requestPasscode({ email: ALICE.email, password: 'not the password', mac: MAC });
  // Second factors (issue 13): Bob's authenticator (factor row, sealed secrets, recovery codes) and
  // a pending recovery passcode of Alice's.
  const bobAgain = await h.login(client, BOB, BOB_MAC);
  await enrolTotp(h, client, bobAgain.token, BOB_MAC);
  await recoveryPasscode(h, client, ALICE.email);
  t.ok(await h.app.store.deleteUser(carol.id), 'the newest operator is deleted');
  await h.app.close();
  return { h, oldToken: alice.token, renewedToken: renewed.token, bobToken: bob.token, carolId: carol.id };
}

/** An app on the PostgreSQL store, on the harness's data directory (its key ring and certificate). */
async function appOnPostgres(t: Test, h: Harness, url: string): Promise<{ app: App; port: number; ca: Buffer }> {
  const config = { ...h.app.config, store: { ...h.app.config.store, url } } as Config;
  const app = await createApp({ config, log: createLogger('warn', new LogSink()), clock: h.clock.fn, scrypt: TEST_SCRYPT, mailRetryDelayMs: 10 });
  t.teardown(() => app.close(1000));
  const { address, tls } = await app.listen();
  return { app, port: address.port, ca: tls.cert };
}

if (cluster) {
  t.test('store migrate copies every row, keeps ids, and the service runs on PostgreSQL as it ran on SQLite', async (t) => {
    const { h, oldToken, renewedToken, bobToken, carolId } = await filledDataDir(t);
    const before = sqliteRows(h.dataDir);
    for (const table of MIGRATED_TABLES) t.ok(before[table]!.length > 0, `the source has ${table} rows`);
    const url = await cluster.createDatabase();

    const r = await store(['migrate', '--to', url, '--yes'], cliEnv(h.dataDir));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`^copied .*hellwall\\.db \\(schema ${SQLITE_SCHEMA}\\) into postgres://hellwall:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/\\w+ \\(schema ${POSTGRES_SCHEMA_VERSION}\\)\\n`));
    for (const table of MIGRATED_TABLES) {
      const n = before[table]!.length;
      t.match(r.stdout, new RegExp(`\\n${table} +${n} +${n}\\n`), `${table}: ${n} rows on both sides`);
    }
    t.match(r.stdout, /row counts verified; new ids start at users \d+, sessions \d+, audit \d+/);
    t.notOk((r.stdout + r.stderr).includes(cluster.password), 'the password is never printed');

    t.same(await postgresRows(url), before, 'every row of every table, ids and bytes included');

    // The same records through both stores' interface.
    const lite = openSqliteStore(path.join(h.dataDir, 'hellwall.db'));
    const pgs = await openPostgresStore({ url });
    try {
      t.same(await pgs.listUsers(), await lite.listUsers());
      t.same(await pgs.listAllOpenSessions(), await lite.listAllOpenSessions());
      t.same(await pgs.queryAudit({ limit: 1000 }), await lite.queryAudit({ limit: 1000 }));
      t.same(await pgs.findSessionById(2), await lite.findSessionById(2), 'a revoked session too');
    } finally {
      await lite.close();
      await pgs.close();
    }

    // The service on PostgreSQL, same data directory (same key ring): sessions made before answer as before.
    const { app, port, ca } = await appOnPostgres(t, h, url);
    const client = await h.connect({ port, ca });
    t.equal((await client.check({ token: renewedToken, mac: MAC, request: 'inventory.read' })).status, 'authorized', 'the renewed session checks');
    const grace = await client.check({ token: oldToken, mac: MAC, request: 'inventory.read' });
    t.same([grace.status, grace.status === 'renew' && grace.token], ['renew', renewedToken], 'the rotated-out token still gets its successor within the grace');
    t.equal((await client.check({ token: bobToken, mac: BOB_MAC, request: 'inventory.read' })).status, 'unauthorized', 'a logged-out session stays ended');

    // New rows get ids above every id SQLite handed out (Carol's was the highest user id, deleted).
    const maxId = (table: string): number => Math.max(0, ...before[table]!.map((row) => row.id as number));
    t.ok(carolId > maxId('users'), 'the deleted operator had the highest id');
    const dave = await app.addUser(DAVE);
    t.equal(dave.id, carolId + 1, 'a new operator gets the next id after the deleted one, never a used one');
    const since = h.smtp.messages.length;
    const res = await client.requestPasscode({ email: DAVE.email, password: DAVE.password, mac: MAC });
    t.equal(res.status, 'ok');
    const passcode = passcodeFrom(await h.smtp.waitFor(DAVE.email, since));
    const login = await client.login({ email: DAVE.email, phone: DAVE.phone, password: DAVE.password, passcode, mac: MAC });
    if (login.status !== 'ok') return t.fail(JSON.stringify(login));
    t.equal((await client.check({ token: login.token, mac: MAC, request: 'inventory.read' })).status, 'authorized', 'a new login on PostgreSQL checks');
    await app.audit.flush();
    const sessions = await app.store.listOpenSessions(dave.id);
    t.ok(sessions[0]!.id > maxId('sessions'), 'a new session id is above the old ones');
    const newest = await app.store.queryAudit({ limit: 1 });
    t.ok(newest[0]!.id > maxId('audit'), 'a new audit row id is above the old ones');
  });

  t.test('store migrate refuses a target that already holds rows, and changes nothing there', async (t) => {
    const dataDir = await smallDataDir(t);
    const url = await cluster.createDatabase();
    t.equal((await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir))).code, 0);
    const before = await postgresRows(url);
    const again = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
    t.equal(again.code, 1);
    t.match(again.stderr, /^hellwall: the PostgreSQL database postgres:\/\/hellwall:\*\*\*@.* is not empty \(users: 1, audit: 1\): store migrate copies only into an empty database/);
    t.same(await postgresRows(url), before);
    const check = await store(['migrate', '--to', url], cliEnv(dataDir));
    t.equal(check.code, 1, 'the check without --yes finds it too');
    t.match(check.stderr, /is not empty/);
  });

  t.test('store migrate refuses a SQLite database below the newest schema, before touching the target', async (t) => {
    const dataDir = tempDir(t);
    const db = new Database(path.join(dataDir, 'hellwall.db'));
    migrate(db, MIGRATIONS.slice(0, 5));
    db.close();
    const url = await cluster.createDatabase();
    const r = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
    t.equal(r.code, 1);
    t.match(r.stderr, new RegExp(`is at schema version 5, not ${SQLITE_SCHEMA} \\(this Hellwall's\\): start this version of Hellwall on the data directory once`));
    t.notOk(await hasTables(url), 'the target was not even migrated');
    t.equal(new Database(path.join(dataDir, 'hellwall.db')).pragma('user_version', { simple: true }), 5, 'nor the source');
  });

  t.test('store migrate refuses while another process has the SQLite database open: stop the server first', async (t) => {
    const dataDir = await smallDataDir(t);
    const url = await cluster.createDatabase();
    // An idle open store, as a running server's is between requests.
    const running = openSqliteStore(path.join(dataDir, 'hellwall.db'));
    await running.findUserByEmail('ops@example.com');
    const r = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
    t.equal(r.code, 1);
    t.match(r.stderr, /is in use by another process \(a running Hellwall server, or a hellwall command\): stop the server first/);
    t.notOk(await hasTables(url));
    t.ok(await running.findUserByEmail('ops@example.com'), 'the running store is unharmed');
    const check = await store(['migrate', '--to', url], cliEnv(dataDir));
    t.equal(check.code, 0, 'the check without --yes reads beside the running server');
    t.match(check.stdout, /\nusers +1\n(.|\n)*has the SQLite database open: stop it before copying\nnothing was changed/);
    t.ok(await running.findUserByEmail('ops@example.com'));
    await running.close();

    // Another process, as a server is: it holds the file open in WAL mode and does nothing.
    const holder = spawn(process.execPath, [
      '-e',
      `const db = new (require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))}))(process.argv[1]);
       db.prepare('SELECT count(*) FROM users').get(); console.log('open'); setInterval(() => {}, 1000);`,
      path.join(dataDir, 'hellwall.db'),
    ], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    t.teardown(() => holder.kill());
    await once(holder.stdout!, 'data');
    const other = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
    t.equal(other.code, 1, 'refused while another process holds it open');
    t.match(other.stderr, /stop the server first/);
    holder.kill();
    await exited;

    t.equal((await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir))).code, 0, 'once it is stopped, the copy runs');
    t.equal(await userCount(url), 1);
  });

  t.test('store migrate is all or nothing: a row the target rejects leaves it empty', async (t) => {
    const dataDir = await smallDataDir(t);
    // A session of no user: only a database with foreign keys off could hold it, PostgreSQL refuses it.
    const db = new Database(path.join(dataDir, 'hellwall.db'));
    db.pragma('foreign_keys = OFF');
    db.prepare(
      `INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at)
       VALUES (99, x'01', 'm', '127.0.0.1', 1, 1, 2, 3)`,
    ).run();
    db.close();
    const url = await cluster.createDatabase();
    const r = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
    t.equal(r.code, 1);
    t.match(r.stderr, /copying table sessions failed: .*foreign key.*\(Key \(user_id\)=\(99\) is not present in table "users"\.\); nothing was copied/);
    t.equal(await userCount(url), 0, 'the users copied before the failure were rolled back');
    t.same(await postgresRows(url), Object.fromEntries(MIGRATED_TABLES.map((table) => [table, []])));
  });

  t.test('store migrate without --yes checks and counts, and changes nothing', async (t) => {
    const dataDir = await smallDataDir(t);
    const url = await cluster.createDatabase();
    const r = await store(['migrate'], cliEnv(dataDir, { HELLWALL_STORE_URL: url }));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`hellwall\\.db \\(schema ${SQLITE_SCHEMA}\\) can be copied into postgres://hellwall:\\*\\*\\*@.*, which is empty\\n`));
    t.match(r.stdout, /\nusers +1\n/);
    t.match(r.stdout, /nothing was changed: run again with --yes to copy\n$/);
    t.notOk(await hasTables(url), 'no schema was created');
  });

  t.test('store migrate names an unreachable or refusing database without its password', async (t) => {
    const dataDir = await smallDataDir(t);
    const wrong = cluster.url.replace(cluster.password, 'not-the-password-1234');
    const refused = await store(['migrate', '--to', wrong, '--yes'], cliEnv(dataDir));
    t.equal(refused.code, 1);
    t.match(refused.stderr, /password authentication failed/);
    t.notOk(refused.stderr.includes('not-the-password-1234'), 'the password is masked');
    const closed = await store(['migrate', '--to', 'postgres://hellwall:hunter2secret@127.0.0.1:1/hellwall', '--yes'], cliEnv(dataDir));
    t.equal(closed.code, 1);
    t.match(closed.stderr, /postgres:\/\/hellwall:\*\*\*@127\.0\.0\.1:1\/hellwall/);
    t.notOk(closed.stderr.includes('hunter2secret'));
    const dry = await store(['migrate', '--to', 'postgres://hellwall:hunter2secret@127.0.0.1:1/hellwall'], cliEnv(dataDir));
    t.equal(dry.code, 1);
    t.match(dry.stderr, /cannot connect to the PostgreSQL database postgres:\/\/hellwall:\*\*\*@127\.0\.0\.1:1\/hellwall/);
    t.notOk(dry.stderr.includes('hunter2secret'));
  });

  t.test('store migrate logs what it does, never the password, and leaves stale node rows behind', async (t) => {
    // A server that crashed left its row: on the new database it would look alive.
    const dataDir = await smallDataDir(t, (s) => s.recordNode({ id: 'crashed-node', currentKeyId: 1, seenAt: 5 }));
    const url = await cluster.createDatabase();
    const sink = new LogSink();
    const report = await migrateSqliteToPostgres({ dataDir, url, log: createLogger('trace', sink) });
    t.equal(report.copied, true);
    t.same(report.nextIds, { users: 2, sessions: 1, audit: 2 });
    t.ok(sink.find({ msg: 'store migrate: committed' }).length === 1);
    t.ok(sink.text.includes('***@'), 'the URL is logged masked');
    t.notOk(sink.text.includes(cluster.password));
    t.same(await withPg(url, async (c) => (await c.query('SELECT * FROM nodes')).rows), [], 'no node row is copied');
  });
}

t.test('store migrate refuses a data directory without a database, and a URL that is not postgres://', async (t) => {
  const dataDir = tempDir(t);
  const url = 'postgres://hellwall:pw-unused-here@127.0.0.1:1/x';
  const missing = await store(['migrate', '--to', url, '--yes'], cliEnv(dataDir));
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no SQLite database at .*hellwall\.db .*--data-dir \(HELLWALL_DATA_DIR\) must name the data directory/);
  const other = await store(['migrate', '--to', 'mysql://root:topsecret@db/x', '--data-dir', dataDir], {});
  t.equal(other.code, 1);
  t.match(other.stderr, /must be a postgres:\/\/ URL, not mysql:\/\/root:\*\*\*@db\/x/);
  t.notOk(other.stderr.includes('topsecret'));
  await t.rejects(migrateSqliteToPostgres({ dataDir, url }), StoreMigrateError);
});

t.test('store usage: a subcommand and a URL are required', async (t) => {
  const dataDir = tempDir(t);
  const none = await store([], cliEnv(dataDir));
  t.equal(none.code, 2);
  t.match(none.stderr, /Usage: hellwall store <command>[^]*migrate/, 'the group alone shows its usage');
  const noUrl = await store(['migrate'], cliEnv(dataDir));
  t.equal(noUrl.code, 2);
  t.match(noUrl.stderr, /--to postgres:\/\/… \(or \$HELLWALL_STORE_URL\) is required/);
  const help = await store(['migrate', '--bogus'], cliEnv(dataDir));
  t.equal(help.code, 2);
  const usage = (await store(['migrate', '--help'], {})).stdout;
  t.match(usage, /Usage: hellwall store migrate[^]*--to URL[^]*--yes[^]*--data-dir D/, 'its help lists its options');
});
