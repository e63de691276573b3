import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { HellwallClient } from '../../src/client/client.js';
import { httpGet, metricsText, sample } from '../helpers/http.js';
import { cli, env, MAIN, startServer, type RunningServer } from '../helpers/processes.js';

// `workers: 2` for real: a primary and two worker processes on one TLS port and one SQLite file.
// Which worker a connection landed on is read from /readyz, which lists each worker's pid and open
// connections: a connection opened while the others stay open shows up on exactly one of them.

const PASSWORD = 'correct horse battery staple';
const MAC = '00:1a:2b:3c:4d:5e';
const EMAIL = 'ops@example.com';
const PHONE = '+1 555 0100';

interface WorkerStatus {
  pid: number;
  connections: number;
  listening: boolean;
}

async function workers(server: RunningServer): Promise<WorkerStatus[]> {
  const res = await httpGet(server.opsPort, '/readyz');
  return (JSON.parse(res.body) as { workers: WorkerStatus[] }).workers;
}

async function passcodeFromOutbox(dataDir: string, seen: number): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  for (let i = 0; i < 100; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
    if (files.length > seen) {
      const newest = files.map((f) => path.join(outbox, f)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs).at(-1)!;
      const code = /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(newest, 'utf8'))?.[1];
      if (code) return code;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no passcode in the outbox');
}

const until = async (what: string, ok: () => boolean | Promise<boolean>): Promise<void> => {
  for (let i = 0; i < 200; i++) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
};

t.test('two workers share the port, the sessions, the limits, the signals and the metrics', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-workers-'));
  const e = env(dataDir, {
    HELLWALL_PORT: '0',
    HELLWALL_WORKERS: '2',
    // The account lockout (a shared store counter) after 4 attempts; the pair backoff out of the way.
    HELLWALL_LIMIT_FREE_FAILURES: '1000',
    HELLWALL_LIMIT_LOCKOUT_FAILURES: '4',
    // Failed token checks per address: a bucket in each worker's memory, shared through the primary.
    HELLWALL_LIMIT_IP_FAILED_CHECKS: '4',
  });
  t.equal(cli(['user', 'add', '--email', EMAIL, '--phone', PHONE], { ...e, HELLWALL_PASSWORD: PASSWORD }).code, 0);
  const server = await startServer(e);
  t.teardown(() => server.child.kill('SIGKILL'));
  const ready = await server.waitForLog('all workers listening');
  t.equal(ready.workers, 2);
  const initial = await workers(server);
  t.equal(initial.length, 2, 'both workers answer /readyz');
  t.not(initial[0]!.pid, initial[1]!.pid);
  t.equal((await httpGet(server.opsPort, '/readyz')).status, 200);

  const ca = readFileSync(path.join(dataDir, 'dev-cert.pem'));
  const clients: HellwallClient[] = [];
  t.teardown(() => clients.forEach((c) => c.destroy()));
  /** A new connection (the earlier ones stay open) and the pid of the worker it landed on. */
  const connect = async (localAddress?: string): Promise<{ client: HellwallClient; pid: number }> => {
    const before = await workers(server);
    const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca, connectTimeoutMs: 5000, ...(localAddress && { localAddress }) });
    clients.push(client);
    t.equal((await client.hello()).status, 'ok');
    const after = await workers(server);
    const grew = after.filter((w) => w.connections > (before.find((b) => b.pid === w.pid)?.connections ?? 0));
    t.equal(grew.length, 1, 'the connection is on exactly one worker');
    return { client, pid: grew[0]!.pid };
  };
  const a = await connect();
  let b = await connect();
  for (let i = 0; i < 4 && b.pid === a.pid; i++) b = await connect();
  t.not(a.pid, b.pid, 'two connections answered by two different worker processes');
  t.same(new Set([a.pid, b.pid]), new Set(initial.map((w) => w.pid)));

  let mails = 0;
  const login = async (via: HellwallClient): Promise<string> => {
    t.equal((await via.requestPasscode({ email: EMAIL, password: PASSWORD, mac: MAC })).status, 'ok');
    const passcode = await passcodeFromOutbox(dataDir, mails++);
    const res = await via.login({ email: EMAIL, phone: PHONE, password: PASSWORD, passcode, mac: MAC });
    if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
    return res.token;
  };
  const check = async (via: HellwallClient, token: string) => (await via.check({ token, mac: MAC, request: 'r' })).status;

  // A session made on one worker checks on the other; revocation on one is seen by the other at once,
  // even with the session in its cache (checked there just before).
  const token = await login(a.client);
  t.equal(await check(b.client, token), 'authorized', 'made on worker A, checked on worker B');
  t.equal(await check(a.client, token), 'authorized', 'and on A (now cached on both)');
  t.equal((await b.client.logout({ token, mac: MAC })).status, 'ok', 'logged out through worker B');
  t.equal(await check(a.client, token), 'unauthorized', 'worker A refuses it at once');
  t.equal(await check(b.client, token), 'unauthorized');

  // Key rotation: SIGHUP to the primary reaches both workers; a token made with the new key by one
  // verifies on the other.
  const rotated = cli(['key', 'rotate'], e);
  t.equal(rotated.code, 0, rotated.stderr);
  const reloadsBefore = server.lines.filter((l) => l.msg === 'server keys reloaded').length;
  server.child.kill('SIGHUP');
  await until('both workers to reload their keys', () => server.lines.filter((l) => l.msg === 'server keys reloaded').length >= reloadsBefore + 2);
  const reloads = server.lines.filter((l) => l.msg === 'server keys reloaded').slice(reloadsBefore);
  t.same(new Set(reloads.map((l) => l.pid)), new Set([a.pid, b.pid]), 'SIGHUP reached both workers');
  t.same(reloads.map((l) => l.keyIds), [[2, 1], [2, 1]]);
  const fresh = await login(b.client);
  t.equal(await check(a.client, fresh), 'authorized', 'a key-2 token made on B checks on A');

  // The lockout counts attempts on every worker: 4 over fresh connections (spread over both), then
  // the 5th is refused, wherever it lands.
  const attempts: number[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await connect();
    attempts.push(c.pid);
    t.match(await c.client.requestPasscode({ email: 'nobody@example.com', password: 'not the password', mac: MAC }), { status: 'ok' }, `attempt ${i + 1} admitted`);
  }
  t.equal(new Set(attempts).size, 2, 'the attempts came through both workers');
  for (const via of [a, b]) {
    t.match(await via.client.requestPasscode({ email: 'nobody@example.com', password: 'not the password', mac: MAC }), { error: 'E_RATE_LIMITED' }, `the 5th is refused on worker ${via.pid}`);
  }

  // The per-address limit on failed token checks holds across workers too: 4 guesses from 127.0.0.2
  // spread over both, then the 5th is refused on each. (The uses travel worker → primary → worker;
  // the /readyz round trip through the primary and both workers orders them before the 5th.)
  const bogus = { token: `Awfer_hellwall_${'A'.repeat(43)}`, mac: MAC, request: 'x' };
  const guessers: Array<{ client: HellwallClient; pid: number }> = [];
  for (let i = 0; i < 4; i++) {
    const c = await connect('127.0.0.2');
    guessers.push(c);
    t.match(await c.client.check(bogus), { status: 'unauthorized' }, `guess ${i + 1}`);
  }
  t.equal(new Set(guessers.map((g) => g.pid)).size, 2, 'the guesses came through both workers');
  await workers(server);
  for (const pid of [a.pid, b.pid]) {
    const via = guessers.find((g) => g.pid === pid)!;
    t.match(await via.client.check(bogus), { error: 'E_RATE_LIMITED' }, `the 5th guess is refused on worker ${pid}`);
  }
  t.equal(await check(a.client, fresh), 'authorized', 'another address is not held back');

  // /metrics sums the workers: hellos and connections from both, the gauge counted once.
  const text = await metricsText(server.opsPort);
  const perWorker = await workers(server);
  t.equal(sample(text, 'hellwall_connections_open'), perWorker.reduce((n, w) => n + w.connections, 0), 'open connections: the sum');
  t.equal(sample(text, 'hellwall_connections_open'), clients.length);
  t.equal(sample(text, 'hellwall_requests_total{command="hello",outcome="ok"}'), clients.length, 'one hello per connection, whichever worker answered');
  t.equal(sample(text, 'hellwall_requests_total{command="token.check",outcome="authorized"}'), 4);
  t.equal(sample(text, 'hellwall_requests_total{command="token.check",outcome="E_RATE_LIMITED"}'), 2);
  t.equal(sample(text, 'hellwall_sessions_active'), 1, 'counted once, not once per worker');
  t.equal(sample(text, 'hellwall_workers_listening'), 2);

  // A worker that dies is replaced; the service keeps answering meanwhile.
  process.kill(a.pid, 'SIGKILL');
  await server.waitForLog('worker died; restarting it');
  await until('a replacement worker', async () => {
    const now = await workers(server);
    return now.length === 2 && !now.some((w) => w.pid === a.pid);
  });
  t.equal(await check(b.client, fresh), 'authorized', 'the other worker served on');
  const replaced = await connect();
  t.equal(await check(replaced.client, fresh), 'authorized');
  t.match(await metricsText(server.opsPort), /hellwall_worker_restarts_total 1\n/);

  // SIGTERM: the primary asks both to drain; each stops, then the primary, with 0.
  const pids = (await workers(server)).map((w) => w.pid);
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0);
  const stopped = server.lines.filter((l) => l.msg === 'hellwall stopped');
  t.same(new Set(stopped.filter((l) => l.worker !== undefined).map((l) => l.pid)).size >= 2, true);
  for (const pid of pids) t.ok(stopped.some((l) => l.pid === pid), `worker ${pid} drained and stopped`);
  t.ok(stopped.some((l) => l.primary !== undefined && l.clean === true), 'then the primary, every worker having exited cleanly');
});

t.test('the primary exits non-zero when workers keep failing before they listen', async (t) => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-workers-fail-'));
  // An address no interface has: the primary starts (it binds nothing but the ops port); every
  // worker's listen fails.
  const child = spawn(process.execPath, [MAIN], {
    env: env(dataDir, { HELLWALL_PORT: '0', HELLWALL_WORKERS: '2', HELLWALL_HOST: '192.0.2.1' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.equal(code, 1);
  const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(lines.some((l) => l.msg === 'worker died; restarting it'), 'restarted with backoff first');
  t.ok(lines.some((l) => l.msg === 'workers keep failing before they listen; giving up'));
});
