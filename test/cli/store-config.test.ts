import { existsSync, mkdtempSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { MAIN, env, startServer } from '../helpers/processes.js';
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { POSTGRES_SCHEMA_VERSION } from '../../src/store/postgres-migrations.js';
import { openPostgresStore } from '../../src/store/postgres-store.js';
import { pgOrSkip } from '../helpers/postgres.js';

// Issue 11: a database that cannot be opened as configured stops `npm start` with one line naming
// the setting and the cause, exit 2, and nothing half-started. Real processes: the exit code and
// stderr are what an operator sees.

function serve(dir: string, url: string): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN], { env: env(dir, { HELLWALL_PORT: '0', HELLWALL_STORE_URL: url }), encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stderr: r.stderr };
}

async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

t.test('an unusable store.url stops the server at start with a clear line and exit 2', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-store-config-'));
  const notPostgres = serve(dir, 'mysql://root:hunter2@127.0.0.1/db');
  t.equal(notPostgres.code, 2);
  t.match(notPostgres.stderr, /store\.url \(HELLWALL_STORE_URL\) must be empty for SQLite or a postgres:\/\/ URL/);
  t.notMatch(notPostgres.stderr, /hunter2/, 'the password is masked');

  const port = await closedPort();
  const refused = serve(dir, `postgres://hellwall:s3cret-pw@127.0.0.1:${port}/hellwall`);
  t.equal(refused.code, 2, 'unreachable database: exit 2');
  t.match(refused.stderr, /127\.0\.0\.1/, 'names where');
  t.match(refused.stderr, /refused|ECONNREFUSED/i, 'and why');
  t.notMatch(refused.stderr, /s3cret-pw/, 'never the password');
  t.notMatch(refused.stderr, /\n\s+at /, 'no stack trace');
  t.notOk(existsSync(path.join(dir, 'hellwall.db')), 'no SQLite file made instead');
});

t.test('a refused password and a newer schema say so', async (t) => {
  const cluster = await pgOrSkip(t);
  if (!cluster) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-store-config-'));
  const wrong = serve(dir, cluster.url.replace(`:${cluster.password}@`, ':not-the-password@'));
  t.equal(wrong.code, 2);
  t.match(wrong.stderr, /password authentication failed/);
  t.notMatch(wrong.stderr, /not-the-password/);

  // A database a newer Hellwall has migrated: this one must not touch it.
  const store = await openPostgresStore({ url: cluster.url });
  await store.close();
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'from the future', 0)");
  await client.end();
  const newer = serve(dir, cluster.url);
  t.equal(newer.code, 2);
  t.match(newer.stderr, /99/, 'names the newer version');
  t.match(newer.stderr, new RegExp(String(POSTGRES_SCHEMA_VERSION)), 'and the one this code knows');
});

t.test('the first start on a fresh machine makes the data directory (0700) with its database', async (t) => {
  const parent = mkdtempSync(path.join(os.tmpdir(), 'hellwall-fresh-'));
  const dir = path.join(parent, 'data');
  const server = await startServer(env(dir, { HELLWALL_PORT: '0' }));
  t.teardown(() => server.child.kill('SIGKILL'));
  t.ok(existsSync(path.join(dir, 'hellwall.db')), 'the database is there');
  t.equal(statSync(dir).mode & 0o777, 0o700, 'and only its owner can read the directory');
});
