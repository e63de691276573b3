// `npm run bench -- --sessions 1000,100000,1000000` (or node dist/bench/sessions-bench.js --sessions …):
// what periodic and admin reads cost the event loop as the data grows. For each size, N sessions
// (spread over 1,000 operators; 90 % current, 9 % expired but renewable, 1 % dead) are written
// straight into a fresh SQLite file; the real service then runs on it in this process, and for a
// /metrics scrape, `admin.stats` and one housekeeping pass (which deletes the dead 1 %) the longest
// event-loop stall is measured (perf_hooks.monitorEventLoopDelay), next to what the same count
// costs when run on the event loop (what the gauge did before it moved to the reader thread). Then
// token checks at 16 × 32 from a separate load process, with and without a scrape every second.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { buildApp, type App } from '../app.js';
import { HellwallClient } from '../client/client.js';
import { loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import type { MailMessage, Mailer } from '../mail/mailer.js';
import { COMMAND_CODES } from '../protocol/messages.gen.js';
import { liveBounds } from '../services/session-rules.js';
import { HOUSEKEEPING_BATCH_MS, Housekeeper } from '../ops/housekeeper.js';
import { DATABASE_FILE } from '../store/open.js';
import type { Store } from '../store/store.js';
import { openSqliteStore } from '../store/sqlite-store.js';
import type { LoadEvent, LoadResult, LoadSpec } from './load-client.js';

const CLIENT_JS = fileURLToPath(new URL('./load-client.js', import.meta.url));
const USER = { email: 'bench@example.com', phone: '+15550100', role: 'user', password: 'bench password 0123456789' };
const MAC = '02:00:5e:00:be:01';
const OWNERS = 1000;
const DAY = 86_400_000;

export interface SessionsResult {
  readonly sessions: number;
  /** The live-session count run on the event loop, as the gauge did before (ms; the stall it caused). */
  readonly onLoopCountMs: number;
  /** Longest event-loop stall during a /metrics scrape (ms), and the scrape's own time. */
  readonly scrapeStallMs: number;
  readonly scrapeMs: number;
  /** Event-loop busy time of a scrape and of admin.stats, in all (ms). */
  readonly scrapeBusyMs: number;
  readonly statsBusyMs: number;
  /**
   * The main thread's CPU time for a scrape and for admin.stats beyond its idle background (ms): the
   * event loop's own cost.
   */
  readonly scrapeCpuMs: number;
  readonly statsCpuMs: number;
  /** The longest stall over as long a time with nothing to do: the machine's own share (ms). */
  readonly idleStallMs: number;
  readonly statsStallMs: number;
  readonly statsMs: number;
  readonly housekeepingStallMs: number;
  /** Each batch's time: how long it held the event loop (median, longest). */
  readonly housekeepingBatchMedianMs: number;
  readonly housekeepingBatchMaxMs: number;
  readonly housekeepingMs: number;
  readonly housekeepingBatches: number;
  readonly deletedSessions: number;
  /** Token checks at 16 × 32 without scrapes, and with a scrape every second. */
  readonly checks?: { readonly idle: LoadResult; readonly scraped: LoadResult };
}

/** N sessions over OWNERS operators, straight into the file (no service logic: only the rows). */
function seed(file: string, n: number, now: number): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const user = db.prepare('INSERT INTO users (email, phone, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)');
  const session = db.prepare(
    `INSERT INTO sessions (user_id, master, mac, ip, created_at, last_seen_at, expires_at, absolute_expires_at, key_id)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)`,
  );
  const pool = randomBytes(32 * 4096);
  db.transaction(() => {
    const ids: number[] = [];
    for (let i = 0; i < OWNERS; i++) ids.push(Number(user.run(`seed-${i}@example.com`, '+15550100', 'user', 'x', now - DAY).lastInsertRowid));
    for (let i = 0; i < n; i++) {
      // Unique masters: a counter in the first 8 bytes, random filler after.
      const master = Buffer.alloc(32);
      pool.copy(master, 0, (i % 4096) * 32, (i % 4096) * 32 + 32);
      master.writeBigUInt64BE(BigInt(i));
      const kind = i % 100;
      const created = now - 3_600_000;
      // 90 % current; 9 % expired but renewable; 1 % dead (past the absolute limit): housekeeping's.
      const expires = kind < 90 ? now + 3_600_000 : now - 60_000;
      const absolute = kind < 99 ? now + 30 * DAY : now - 60_000;
      session.run(ids[i % OWNERS], master, '02:00:00:00:00:01', '10.0.0.1', created, created, expires, absolute);
    }
  })();
  db.close();
}

/**
 * Runs `fn` and answers its duration, the longest event-loop stall while it ran, and how long the
 * loop was busy in all (event-loop utilization: time not spent waiting for I/O), in ms. A stall
 * also counts time the process waited for a core on a busy machine; busy time mostly does not.
 */
async function stall<T>(fn: () => Promise<T>, watch = true): Promise<{ value: T; ms: number; stallMs: number; busyMs: number; cpuMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  // The histogram's 1 ms timer costs the main thread CPU of its own: off when measuring that.
  if (watch) h.enable();
  const elu = performance.eventLoopUtilization();
  const cpu = mainThreadCpuMs();
  const started = performance.now();
  const value = await fn();
  const ms = performance.now() - started;
  const cpuMs = mainThreadCpuMs() - cpu;
  const busyMs = performance.eventLoopUtilization(elu).active;
  h.disable();
  // The histogram counts the delay beyond its 1 ms resolution timer.
  return { value, ms, stallMs: !watch ? 0 : h.count > 0 ? h.max / 1e6 : ms, busyMs, cpuMs };
}

/**
 * CPU time the main thread (the event loop's) has used, in ms, from the scheduler's own account
 * (/proc/self/task/<pid>/schedstat, nanoseconds on a CPU): unlike a stall or the loop's busy time,
 * it does not count waiting for a core on a busy machine, nor the reader thread's work.
 */
function mainThreadCpuMs(): number {
  return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

function get(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

async function login(app: App, port: number, ca: Buffer, inbox: Promise<MailMessage>): Promise<string> {
  const client = await HellwallClient.connect({ host: '127.0.0.1', port, ca });
  try {
    const requested = await client.requestPasscode({ email: USER.email, password: USER.password, mac: MAC });
    if (requested.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(requested)}`);
    const passcode = /passcode is: (\w+)/.exec((await inbox).text)?.[1];
    if (!passcode) throw new Error('no passcode in the mail');
    const res = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac: MAC });
    if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
    void app;
    return res.token;
  } finally {
    await client.close();
  }
}

function runLoad(spec: LoadSpec, duringMeasure?: () => () => void): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT_JS], { env: { ...process.env, BENCH_SPEC: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stopExtra: (() => void) | undefined;
    let result: LoadResult | undefined;
    createInterface({ input: child.stdout }).on('line', (line) => {
      const ev = JSON.parse(line) as LoadEvent;
      if (ev.event === 'measure') stopExtra = duringMeasure?.();
      else if (ev.event === 'stop') stopExtra?.();
      else if (ev.event === 'result') result = ev.result;
    });
    child.once('exit', (code) => {
      stopExtra?.();
      if (result) resolve(result);
      else reject(new Error(`load client exited ${code} without a result`));
    });
  });
}

export async function measureSessions(n: number, opts: { load: boolean; seconds: number }): Promise<SessionsResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-sessions-bench-'));
  try {
    const now = Date.now();
    const file = path.join(dir, DATABASE_FILE);
    await openSqliteStore(file).close(); // the schema
    // In a process of its own: a million rows' garbage in this heap would be collected during the
    // measurements below and counted against them.
    const seeded = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--seed-into', file, String(n), String(now)], { stdio: 'inherit' });
    if (seeded.status !== 0) throw new Error(`seeding ${n} sessions failed (${seeded.status})`);
    const config = loadConfig({
      HELLWALL_DATA_DIR: dir,
      HELLWALL_PORT: '0',
      HELLWALL_OPS_PORT: '0',
      HELLWALL_LOG_LEVEL: 'silent',
      HELLWALL_HOUSEKEEPING_INTERVAL: '0',
      HELLWALL_LIMITS: 'false',
      // The console is on by default with the embedded defaults; a fixed port would collide.
      HELLWALL_CONSOLE_ENABLED: 'false',
    });
    let deliver!: (m: MailMessage) => void;
    const inbox = new Promise<MailMessage>((resolve) => (deliver = resolve));
    const mailer: Mailer = { send: async (m) => deliver(m), close: () => {} };
    const app = buildApp({ config, log: createLogger('silent'), mailer, scrypt: { ln: 10, r: 8, p: 1 } });
    try {
      await app.addUser(USER);
      const { address, tls, ops } = await app.listen();
      const token = await login(app, address.port, tls.cert, inbox);
      const opsPort = ops!.port;

      // Before: the count on the event loop, on a connection of this thread.
      const direct = new Database(file, { readonly: true });
      const b = liveBounds(Date.now(), config.tokens.idleSeconds * 1000);
      const countSql = `SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.revoked_at IS NULL AND u.disabled = 0
        AND (s.expires_at > ? OR (s.absolute_expires_at > ? AND s.last_seen_at > ?))`;
      const st = direct.prepare(countSql).pluck();
      st.get(b.currentAfter, b.renewableAfter.absolute, b.renewableAfter.lastSeen); // warm the page cache
      const t0 = performance.now();
      st.get(b.currentAfter, b.renewableAfter.absolute, b.renewableAfter.lastSeen);
      const onLoopCountMs = performance.now() - t0;
      direct.close();

      await get(opsPort, '/metrics'); // first use starts the reader thread
      // Medians of five: on a shared machine a single stall may be another process's time slice.
      const scrapes = [];
      for (let i = 0; i < 5; i++) {
        const s = await stall(() => get(opsPort, '/metrics'));
        if (!/hellwall_sessions_active \d+/.test(s.value)) throw new Error('no sessions gauge in the scrape');
        scrapes.push(s);
      }
      // The service's own background work (timers, the metrics' event-loop monitor) costs the main
      // thread about 10 ms of CPU a second: measured idle, and taken off the figures below.
      const idleCpu = await stall(() => new Promise((r) => setTimeout(r, 1000)), false);
      const idleCpuPerMs = idleCpu.cpuMs / idleCpu.ms;
      const net = (r: { cpuMs: number; ms: number }): number => Math.max(0, r.cpuMs - idleCpuPerMs * r.ms);
      const scrapeCpu = [];
      for (let i = 0; i < 5; i++) scrapeCpu.push(await stall(() => get(opsPort, '/metrics'), false));
      const scrape = {
        ms: median(scrapes.map((s) => s.ms)),
        stallMs: median(scrapes.map((s) => s.stallMs)),
        busyMs: median(scrapes.map((s) => s.busyMs)),
        cpuMs: median(scrapeCpu.map(net)),
      };
      // What the machine alone causes: the same measurement over as long with nothing to do. On a
      // busy machine the process waits for a core now and then, and that shows as a stall too.
      const idleRuns = [];
      for (let i = 0; i < 5; i++) idleRuns.push(await stall(() => new Promise((r) => setTimeout(r, scrape.ms))));
      const idleStallMs = median(idleRuns.map((s) => s.stallMs));
      const statsRuns = [];
      for (let i = 0; i < 3; i++) statsRuns.push(await stall(() => app.services.admin.stats({ name: 'cli:bench', auditReads: false })));
      const statsCpu = [];
      for (let i = 0; i < 3; i++) statsCpu.push(await stall(() => app.services.admin.stats({ name: 'cli:bench', auditReads: false }), false));
      const stats = {
        ms: median(statsRuns.map((s) => s.ms)),
        stallMs: median(statsRuns.map((s) => s.stallMs)),
        busyMs: median(statsRuns.map((s) => s.busyMs)),
        cpuMs: median(statsCpu.map(net)),
      };
      // The server's housekeeping, each batch timed: SQLite deletes synchronously, so a batch's
      // time is exactly how long it holds the event loop.
      const batchMs: number[] = [];
      const timed: Store = {
        ...app.store,
        async deleteExpired(at, policy) {
          const started = performance.now();
          try {
            return await app.store.deleteExpired(at, policy);
          } finally {
            batchMs.push(performance.now() - started);
          }
        },
      };
      const housekeeper = new Housekeeper({
        store: timed,
        clock: Date.now,
        log: app.log,
        metrics: app.metrics,
        intervalMs: 0,
        maxBatchMs: HOUSEKEEPING_BATCH_MS,
        policy: { idleMs: config.tokens.idleSeconds * 1000, keepRevokedMs: config.housekeeping.keepRevokedSeconds * 1000, batch: config.housekeeping.batchSize },
      });
      const pass = await stall(() => housekeeper.runOnce());

      let checks: SessionsResult['checks'];
      if (opts.load) {
        const spec: LoadSpec = {
          port: address.port,
          caFile: tls.certFile,
          conns: 16,
          inflight: 32,
          warmupMs: 1000,
          durationMs: opts.seconds * 1000,
          message: { code: COMMAND_CODES['token.check'], token, mac: MAC, request: 'bench.read', data: {} },
          expect: 'authorized',
        };
        const idle = await runLoad(spec);
        const inFlight = new Set<Promise<unknown>>();
        const scraped = await runLoad(spec, () => {
          const timer = setInterval(() => {
            const scrape = get(opsPort, '/metrics').catch((err: unknown) => process.stderr.write(`scrape failed: ${(err as Error).message}\n`));
            inFlight.add(scrape);
            void scrape.finally(() => inFlight.delete(scrape));
          }, 1000);
          return () => clearInterval(timer);
        });
        await Promise.all(inFlight);
        checks = { idle, scraped };
      }
      return {
        sessions: n,
        onLoopCountMs,
        scrapeStallMs: scrape.stallMs,
        scrapeMs: scrape.ms,
        scrapeBusyMs: scrape.busyMs,
        statsBusyMs: stats.busyMs,
        scrapeCpuMs: scrape.cpuMs,
        statsCpuMs: stats.cpuMs,
        idleStallMs,
        statsStallMs: stats.stallMs,
        statsMs: stats.ms,
        housekeepingStallMs: pass.stallMs,
        housekeepingBatchMedianMs: median(batchMs),
        housekeepingBatchMaxMs: Math.max(...batchMs),
        housekeepingMs: pass.ms,
        housekeepingBatches: pass.value.batches,
        deletedSessions: pass.value.deleted.sessions,
        ...(checks && { checks }),
      };
    } finally {
      await app.close(500);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const f = (ms: number): string => ms.toFixed(1);
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

export function sessionsTable(results: readonly SessionsResult[]): string {
  const rows = [
    '| sessions | count on the loop (before) | /metrics scrape: event-loop CPU, longest stall (took) | idle baseline stall | admin.stats: event-loop CPU, longest stall (took) | housekeeping: batch median / longest (pass, batches, deleted) | checks/s 16×32: no scrapes → a scrape a second (p99) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    const c = r.checks;
    rows.push(
      `| ${r.sessions.toLocaleString('en')} | ${f(r.onLoopCountMs)} ms | ${f(r.scrapeCpuMs)}, ${f(r.scrapeStallMs)} ms (${f(r.scrapeMs)} ms) | ${f(r.idleStallMs)} ms | ${f(r.statsCpuMs)}, ${f(r.statsStallMs)} ms (${f(r.statsMs)} ms) | ` +
        `${f(r.housekeepingBatchMedianMs)} / ${f(r.housekeepingBatchMaxMs)} ms (${f(r.housekeepingMs)} ms, ${r.housekeepingBatches}, ${r.deletedSessions}) | ` +
        (c ? `${Math.round(c.idle.rps).toLocaleString('en')} → ${Math.round(c.scraped.rps).toLocaleString('en')} (${f(c.idle.p99Ms)} → ${f(c.scraped.p99Ms)} ms)` : '—') +
        ' |',
    );
  }
  return rows.join('\n');
}

/** Parses `--sessions 1000,100000` (and `--no-load`, `--duration s`) and prints the table. */
export async function sessionsMain(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: { sessions: { type: 'string' }, 'no-load': { type: 'boolean' }, duration: { type: 'string' }, json: { type: 'boolean' } },
    strict: false,
  });
  const sizes = String(values.sessions ?? '1000,100000,1000000')
    .split(',')
    .map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isSafeInteger(n) || n < 1 || n > 10_000_000)) throw new Error('--sessions takes a comma-separated list of counts (1 to 10,000,000)');
  const seconds = values.duration === undefined ? 3 : Number(values.duration);
  const results: SessionsResult[] = [];
  for (const n of sizes) {
    process.stderr.write(`sessions bench: ${n.toLocaleString('en')} sessions …\n`);
    results.push(await measureSessions(n, { load: !values['no-load'], seconds }));
  }
  const machine = `${os.availableParallelism()} cores, load average ${os.loadavg()[0]!.toFixed(2)} at the end`;
  process.stdout.write(values.json ? `${JSON.stringify({ machine, results }, null, 2)}\n` : `${sessionsTable(results)}\n\n${machine}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [, , mode, file, n, now] = process.argv;
  if (mode === '--seed-into') seed(file!, Number(n), Number(now));
  else await sessionsMain(process.argv.slice(2));
  process.exit(0);
}
