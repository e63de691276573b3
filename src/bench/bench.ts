// `npm run bench`: token checks per second against the real server, next to a framed echo over the
// same TLS listener as the ceiling. Usage: bench.js [--json] [--duration <s>] [--warmup <s>] [--quick]
// [--policy] [--profile] [--storm] [--only 1x1,16x32] [--skip-postgres | --postgres-only]. Every
// run reports the server's CPU µs per request (process.cpuUsage over the measured window).
// --profile adds, per configuration, one echo and one check run under the server's CPU profiler,
// summarised by group (cpu-profile.ts). --storm runs the checks again during a login storm
// (storm-client.ts). --policy also measures the
// authorization policy's cost: the same checks with nothing evaluated for it (allow-all) and under a
// 50-rule policy with globs. When PostgreSQL is installed, two nodes on one throwaway PostgreSQL are
// measured against the SQLite node at 16 × 32, and the revocation propagation between them
// (postgres-bench.ts); --postgres-only runs just that part.
import { COMMAND_CODES } from '../protocol/messages.gen.js';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchSession, CpuSample, ServerMode, ServerReady, SessionsReply, SessionsRequest } from './bench-server.js';
import type { LoadEvent, LoadResult, LoadSpec } from './load-client.js';
import { PROFILE_GROUPS, type ProfileSummary } from './cpu-profile.js';
import type { StormEvent, StormSpec } from './storm-client.js';
import { sessionsMain } from './sessions-bench.js';
import { workersMain } from './workers-bench.js';
import { postgresErrors, postgresTable, runPostgresBench, type PostgresResult } from './postgres-bench.js';

const CONNS = [1, 16, 256] as const;
const INFLIGHT = [1, 32] as const;
const SERVER_JS = fileURLToPath(new URL('./bench-server.js', import.meta.url));
const CLIENT_JS = fileURLToPath(new URL('./load-client.js', import.meta.url));
const STORM_JS = fileURLToPath(new URL('./storm-client.js', import.meta.url));

/** A running login storm (storm-client.ts); `stop` answers what its requests were answered. */
async function startStorm(spec: StormSpec): Promise<{ stop(): Promise<Record<string, number>> }> {
  const child = spawn(process.execPath, [STORM_JS], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, BENCH_STORM: JSON.stringify(spec) } });
  const events: StormEvent[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    events.push(JSON.parse(line) as StormEvent);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const next = async (kind: StormEvent['event']): Promise<StormEvent> => {
    for (;;) {
      const found = events.find((e) => e.event === kind);
      if (found) return found;
      const more = new Promise<void>((resolve) => waiters.push(resolve));
      if ((await Promise.race([more.then(() => 'more' as const), exited.then(() => 'exit' as const)])) === 'exit' && !events.some((e) => e.event === kind)) {
        throw new Error('storm client exited early');
      }
    }
  };
  await next('ready');
  return {
    async stop() {
      child.stdin.end();
      const result = await next('result');
      await exited;
      return result.event === 'result' ? result.answers : {};
    },
  };
}

export interface RunResult extends LoadResult {
  /** Server CPU time over the measured window, in cores (the server is single-threaded: 1 is saturated). */
  readonly serverCpu: number;
  /**
   * Server CPU microseconds per answered request over the window: what a request costs the
   * server, which holds still on a shared machine where req/s does not.
   */
  readonly serverUsPerReq: number;
  /** With --profile: the server's CPU profile over the window (a run of its own: profiling costs CPU). */
  readonly profile?: ProfileSummary;
}

export interface ConfigResult {
  readonly conns: number;
  readonly inflight: number;
  readonly echo: RunResult;
  readonly check: RunResult;
  /** The same checks against the service with its rate limits off. */
  readonly checkNoLimits: RunResult;
  /** check req/s as a fraction of echo req/s. */
  readonly ratio: number;
  /** Throughput the limits cost: 1 - check / checkNoLimits (negative: within noise). */
  readonly limitsCost: number;
  /** With --policy. */
  readonly policy?: PolicyResult;
  /** With --profile: one more echo and check run each, with the server's CPU profiler on. */
  readonly profiled?: { readonly echo: RunResult; readonly check: RunResult };
  /** With --storm: the same checks again during a login storm, and what the storm was answered. */
  readonly storm?: { readonly check: RunResult; readonly answers: Readonly<Record<string, number>> };
}

export interface PolicyResult {
  /** The same checks with the policy step doing nothing: the floor. */
  readonly allowAll: RunResult;
  /** Under a policy file of 50 rules with globs (bench-policies.ts). */
  readonly rules50: RunResult;
  /** Throughput the built-in policy costs: 1 - check / allowAll (negative: within noise). */
  readonly builtinCost: number;
  /** Throughput the 50-rule policy costs: 1 - rules50 / allowAll. */
  readonly rules50Cost: number;
}

export interface ServerChild {
  readonly ready: ServerReady;
  cpu(): Promise<CpuSample>;
  /** Starts the server's CPU profiler; `profileStop` answers its summary. */
  profileStart(): void;
  profileStop(): Promise<ProfileSummary>;
  /** More sessions of the bench user (hellwall-pg only). */
  sessions(count: number): Promise<readonly BenchSession[]>;
  stop(): Promise<void>;
}

function startServer(mode: ServerMode, dataDir: string, storeUrl?: string): Promise<ServerChild> {
  const args = [SERVER_JS, mode, dataDir, ...(storeUrl === undefined ? [] : [storeUrl])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting: Array<{ resolve(sample: CpuSample): void; reject(err: Error): void }> = [];
  const waitingSessions: Array<{ resolve(sessions: readonly BenchSession[]): void; reject(err: Error): void }> = [];
  const waitingProfiles: Array<{ resolve(summary: ProfileSummary): void; reject(err: Error): void }> = [];
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      for (const w of [...waiting.splice(0), ...waitingSessions.splice(0), ...waitingProfiles.splice(0)]) w.reject(new Error(`${mode} server exited during the run`));
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Closing the channel asks for a graceful stop; a child that does not manage it is killed.
    if (child.connected) child.disconnect();
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${mode} server did not start within 30 s`)), 30_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      void stop();
      reject(err);
    };
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`${mode} server exited (${signal ?? code})`)));
    child.on('message', (message: ServerReady | CpuSample | SessionsReply | ProfileSummary) => {
      if (message.type === 'cpu') {
        waiting.shift()?.resolve(message);
        return;
      }
      if (message.type === 'profile') {
        waitingProfiles.shift()?.resolve(message);
        return;
      }
      if (message.type === 'sessions') {
        const w = waitingSessions.shift();
        if (message.sessions) w?.resolve(message.sessions);
        else w?.reject(new Error(`${mode} server: ${message.error ?? 'no sessions'}`));
        return;
      }
      clearTimeout(timer);
      resolve({
        ready: message,
        cpu: () =>
          new Promise((resolveSample, rejectSample) => {
            if (!child.connected) return rejectSample(new Error(`${mode} server is gone`));
            waiting.push({ resolve: resolveSample, reject: rejectSample });
            child.send('cpu');
          }),
        profileStart: () => {
          if (child.connected) child.send('profile-start');
        },
        profileStop: () =>
          new Promise((resolveProfile, rejectProfile) => {
            if (!child.connected) return rejectProfile(new Error(`${mode} server is gone`));
            waitingProfiles.push({ resolve: resolveProfile, reject: rejectProfile });
            child.send('profile-stop');
          }),
        sessions: (count) =>
          new Promise((resolveSessions, rejectSessions) => {
            if (!child.connected) return rejectSessions(new Error(`${mode} server is gone`));
            waitingSessions.push({ resolve: resolveSessions, reject: rejectSessions });
            child.send({ type: 'sessions', count } satisfies SessionsRequest);
          }),
        stop,
      });
    });
  });
}

/**
 * One load-client process against one server (or the nodes of one cluster); samples the servers'
 * CPU around the measured window (summed: two nodes can use up to two cores).
 */
export function runClient(spec: LoadSpec, servers: readonly ServerChild[], opts: { profile?: boolean } = {}): Promise<RunResult> {
  const child = spawn(process.execPath, [CLIENT_JS], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_SPEC: JSON.stringify(spec) },
  });
  return new Promise((resolve, reject) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), spec.warmupMs + spec.durationMs + 30_000);
    let before: Promise<CpuSample[]> | undefined;
    let after: Promise<CpuSample[]> | undefined;
    let profile: Promise<ProfileSummary> | undefined;
    let result: LoadResult | undefined;
    const sample = (): Promise<CpuSample[]> => {
      const pending = Promise.all(servers.map((server) => server.cpu()));
      // Awaited once the client exits; until then a failure must not count as unhandled.
      pending.catch(() => {});
      return pending;
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as LoadEvent;
      if (event.event === 'measure') {
        before = sample();
        if (opts.profile) servers[0]!.profileStart();
      } else if (event.event === 'stop') {
        after = sample();
        if (opts.profile) {
          profile = servers[0]!.profileStop();
          profile.catch(() => {});
        }
      } else result = event.result;
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      if (code !== 0 || !result || !before || !after) {
        reject(new Error(`load client failed (${signal ?? code}) for ${spec.conns}x${spec.inflight}`));
        return;
      }
      const done = result;
      Promise.all([before, after, profile]).then(([a, b, summary]) => {
        const serverCpu = a.reduce((sum, s, i) => sum + (b[i]!.cpuMs - s.cpuMs) / (b[i]!.atMs - s.atMs), 0);
        const serverUsPerReq = done.rps > 0 ? (serverCpu * 1e6) / done.rps : NaN;
        resolve({ ...done, serverCpu, serverUsPerReq, ...(summary && { profile: summary }) });
      }, reject);
    });
  });
}

function seconds(raw: string | undefined, fallback: number, name: string): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > 600) throw new Error(`--${name} must be a number of seconds in (0, 600]`);
  return value;
}

interface Report {
  readonly node: string;
  readonly cpus: number;
  /** 1-minute load average before the run: anything else busy on the machine skews every figure. */
  readonly loadBefore: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly results: readonly ConfigResult[];
  /** Two nodes on PostgreSQL against one on SQLite, and revocation propagation; absent with --skip-postgres. */
  readonly postgres?: PostgresResult;
}

function table(report: Report): string {
  const ms = (v: number): string => (v < 10 ? v.toFixed(3) : v.toFixed(1)).padStart(7);
  const cpu = (r: RunResult): string => `${Math.round(r.serverCpu * 100)}/${Math.round(r.clientCpu * 100)}`.padStart(7);
  const run = (r: RunResult): string => `${Math.round(r.rps).toString().padStart(11)} ${ms(r.p50Ms)} ${ms(r.p99Ms)}`;
  const lines = [
    `Hellwall bench: node ${report.node}, ${report.cpus} CPUs (load ${report.loadBefore.toFixed(2)} before), ` +
      `${report.durationS} s per run after ${report.warmupS} s warm-up; latency in ms`,
    'conns inflight |  echo req/s     p50     p99 | check req/s     p50     p99 | ratio | srv µs/req echo  check  +check | no-limits req/s | limits cost | cpu% srv/cli echo   check | errors',
  ];
  const us = (v: number): string => v.toFixed(2).padStart(6);
  for (const r of report.results) {
    lines.push(
      `${String(r.conns).padStart(5)} ${String(r.inflight).padStart(8)} | ${run(r.echo)} | ${run(r.check)} | ${r.ratio.toFixed(2).padStart(5)} |` +
        `            ${us(r.echo.serverUsPerReq)} ${us(r.check.serverUsPerReq)}  ${us(r.check.serverUsPerReq - r.echo.serverUsPerReq)} |` +
        ` ${Math.round(r.checkNoLimits.rps).toString().padStart(15)} | ${`${(r.limitsCost * 100).toFixed(1)} %`.padStart(11)} |` +
        `              ${cpu(r.echo)} ${cpu(r.check)} | ${String(errors(r)).padStart(6)}`,
    );
  }
  const stormed = report.results.filter((r) => r.storm);
  if (stormed.length > 0) {
    lines.push(
      '',
      'login storm: token checks with the hashing pool saturated by passcode.request/passcode.auth from 128 other addresses (targets: ≥ 0.7× req/s, ≤ 2× p99)',
      'conns inflight | idle req/s   p99 | storm req/s    p99 | req/s × | p99 × | srv µs/req idle storm | storm answers',
    );
    for (const r of stormed) {
      const s = r.storm!;
      const answers = Object.entries(s.answers).map(([k, v]) => `${k} ${v}`).join(', ');
      lines.push(
        `${String(r.conns).padStart(5)} ${String(r.inflight).padStart(8)} | ${Math.round(r.check.rps).toString().padStart(10)} ${r.check.p99Ms.toFixed(2).padStart(5)} |` +
          ` ${Math.round(s.check.rps).toString().padStart(11)} ${s.check.p99Ms.toFixed(2).padStart(6)} | ${(s.check.rps / r.check.rps).toFixed(2).padStart(7)} |` +
          ` ${(s.check.p99Ms / r.check.p99Ms).toFixed(2).padStart(5)} |            ${us(r.check.serverUsPerReq)} ${us(s.check.serverUsPerReq)} | ${answers}`,
      );
    }
  }
  for (const r of report.results) if (r.profiled) lines.push('', profileTable(r.conns, r.inflight, r.profiled));
  for (const r of stormed) {
    const p = r.storm!.check.profile;
    if (!p) continue;
    const per = (ms: number): string => ((ms * 1000) / Math.max(1, r.storm!.check.requests)).toFixed(2).padStart(7);
    lines.push('', `profile during the storm at ${r.conns} × ${r.inflight}: server CPU µs per check answered, by group (the storm's requests included)`);
    for (const g of PROFILE_GROUPS) if (p.groups[g] > 0) lines.push(`  ${g.padEnd(12)} ${per(p.groups[g])}`);
    lines.push('  top self time:');
    for (const t of p.top.slice(0, 12)) lines.push(`  ${per(t.ms)}  ${t.group.padEnd(11)} ${t.fn}${t.at ? `  ${t.at}` : ''}`);
  }
  const withPolicy = report.results.filter((r) => r.policy);
  if (withPolicy.length > 0) {
    const pct = (v: number): string => `${(v * 100).toFixed(1)} %`.padStart(8);
    lines.push(
      '',
      'policy: checks/s with nothing evaluated (allow-all), the built-in policy (one * rule) and 50 rules with globs; cost = 1 - checks/s ÷ allow-all',
      'conns inflight | allow-all req/s | built-in req/s |     cost | 50 rules req/s |     cost',
    );
    for (const r of withPolicy) {
      const p = r.policy!;
      lines.push(
        `${String(r.conns).padStart(5)} ${String(r.inflight).padStart(8)} | ${Math.round(p.allowAll.rps).toString().padStart(15)} |` +
          ` ${Math.round(r.check.rps).toString().padStart(14)} | ${pct(p.builtinCost)} | ${Math.round(p.rules50.rps).toString().padStart(14)} | ${pct(p.rules50Cost)}`,
      );
    }
  }
  return lines.join('\n');
}

/**
 * The grouped profile of one configuration: server CPU µs per request by group, for echo and
 * checks (each from its own profiled run, so the figures include the profiler's own cost), and the
 * functions with the most self time in the check run.
 */
export function profileTable(conns: number, inflight: number, runs: { echo: RunResult; check: RunResult }): string {
  const per = (r: RunResult, ms: number): number => (ms * 1000) / Math.max(1, r.requests);
  const e = runs.echo.profile!;
  const c = runs.check.profile!;
  const lines = [
    `profile at ${conns} × ${inflight}: server CPU µs per request by group (self time, profiler on; GC counted apart)`,
    'group        |   echo |  check | check − echo',
  ];
  for (const g of PROFILE_GROUPS) {
    const a = per(runs.echo, e.groups[g]);
    const b = per(runs.check, c.groups[g]);
    if (a < 0.005 && b < 0.005) continue;
    lines.push(`${g.padEnd(12)} | ${a.toFixed(2).padStart(6)} | ${b.toFixed(2).padStart(6)} | ${(b - a).toFixed(2).padStart(12)}`);
  }
  lines.push(
    `${'total'.padEnd(12)} | ${per(runs.echo, e.totalMs).toFixed(2).padStart(6)} | ${per(runs.check, c.totalMs).toFixed(2).padStart(6)} | ${(per(runs.check, c.totalMs) - per(runs.echo, e.totalMs)).toFixed(2).padStart(12)}`,
    '',
    'top self time in the check run (µs per request, group, function, where):',
  );
  for (const t of c.top.slice(0, 15)) lines.push(`  ${per(runs.check, t.ms).toFixed(3).padStart(6)}  ${t.group.padEnd(11)} ${t.fn}${t.at ? `  ${t.at}` : ''}`);
  return lines.join('\n');
}

function errors(r: ConfigResult): number {
  return r.echo.errors + r.check.errors + r.checkNoLimits.errors + (r.policy ? r.policy.allowAll.errors + r.policy.rules50.errors : 0);
}

/** `--only 1x1,16x32`: the configurations to run; all of them without it. */
function configurations(only: string | undefined): Array<{ conns: number; inflight: number }> {
  const all = CONNS.flatMap((conns) => INFLIGHT.map((inflight) => ({ conns, inflight })));
  if (only === undefined) return all;
  const wanted = only.split(',').map((s) => s.trim());
  const picked = all.filter((c) => wanted.includes(`${c.conns}x${c.inflight}`));
  if (picked.length !== wanted.length) {
    throw new Error(`--only takes a comma-separated list of ${all.map((c) => `${c.conns}x${c.inflight}`).join(', ')}`);
  }
  return picked;
}

async function main(): Promise<number> {
  // `--workers 1,2` and `--sessions 1000,100000,1000000` are benches of their own (README "Benchmark").
  const argv = process.argv.slice(2);
  const asked = (name: string): boolean => argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (asked('workers')) return workersMain(argv).then(() => 0);
  if (asked('sessions')) return sessionsMain(argv).then(() => 0);
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      policy: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      storm: { type: 'boolean', default: false },
      'hash-concurrency': { type: 'string' },
      only: { type: 'string' },
      'skip-postgres': { type: 'boolean', default: false },
      'postgres-only': { type: 'boolean', default: false },
    },
  });
  if (values['skip-postgres'] && values['postgres-only']) throw new Error('--skip-postgres and --postgres-only exclude each other');
  const postgresOnly = values['postgres-only'];
  const configs = configurations(values.only);
  const durationS = seconds(values.duration, values.quick ? 1 : 3, 'duration');
  const warmupS = seconds(values.warmup, values.quick ? 0.25 : 1, 'warmup');
  const loadBefore = os.loadavg()[0] ?? 0;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-bench-'));
  // Read by bench-server.ts (the servers inherit the environment).
  if (values['hash-concurrency'] !== undefined) process.env.BENCH_HASH_CONCURRENCY = values['hash-concurrency'];
  const servers: ServerChild[] = [];
  // Stopped after the servers: the PostgreSQL cluster the nodes use.
  const stopLast: Array<() => Promise<void>> = [];
  const cleanup = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(stopLast.map((fn) => fn().catch(() => undefined)));
    rmSync(dataDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    // Hellwall first: it generates the dev certificate in dataDir that the echo server then loads.
    const hellwall = await startServer('hellwall', dataDir);
    servers.push(hellwall);
    const results: ConfigResult[] = [];
    if (!postgresOnly) await runTable(values, configs, { dataDir, warmupS, durationS, hellwall, servers, results });
    let postgres: PostgresResult | undefined;
    if (!values['skip-postgres']) {
      postgres = await runPostgresBench(
        {
          sqlite: hellwall,
          dataDir,
          startServer: async (mode, dir, storeUrl) => {
            const server = await startServer(mode, dir, storeUrl);
            servers.push(server);
            return server;
          },
          runClient,
          onCleanup: (fn) => stopLast.push(fn),
        },
        { warmupMs: warmupS * 1000, durationMs: durationS * 1000, rounds: values.quick ? 1 : 2, propagationN: values.quick ? 50 : 200 },
      );
      if (!values.json) process.stderr.write(`  done postgres\n`);
    }
    const report: Report = { node: process.version, cpus: os.cpus().length, loadBefore, durationS, warmupS, results, ...(postgres && { postgres }) };
    if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write([...(postgresOnly ? [] : [table(report)]), ...(postgres ? [postgresTable(postgres)] : [])].join('\n\n') + '\n');
    return results.some((r) => errors(r) > 0) || (postgres !== undefined && postgresErrors(postgres) > 0) ? 1 : 0;
  } finally {
    await cleanup();
  }
}

/** The main table: every configuration against echo, the service, and the service without limits. */
async function runTable(
  values: { policy?: boolean; profile?: boolean; storm?: boolean; json?: boolean },
  configs: ReadonlyArray<{ conns: number; inflight: number }>,
  ctx: { dataDir: string; warmupS: number; durationS: number; hellwall: ServerChild; servers: ServerChild[]; results: ConfigResult[] },
): Promise<void> {
  const { dataDir, warmupS, durationS, hellwall, servers, results } = ctx;
  const echo = await startServer('echo', dataDir);
  servers.push(echo);
  // A data directory of its own: a second service on the same database would find the user taken.
  const nolimitsDir = path.join(dataDir, 'nolimits');
  mkdirSync(nolimitsDir, { mode: 0o700 });
  const nolimits = await startServer('hellwall-nolimits', nolimitsDir);
  servers.push(nolimits);
  let policyServers: { allowAll: ServerChild; rules50: ServerChild } | undefined;
  if (values.policy) {
    const start = async (mode: ServerMode): Promise<ServerChild> => {
      const dir = path.join(dataDir, mode);
      mkdirSync(dir, { mode: 0o700 });
      const server = await startServer(mode, dir);
      servers.push(server);
      return server;
    };
    policyServers = { allowAll: await start('hellwall-allowall'), rules50: await start('hellwall-policy50') };
  }
  for (const { conns, inflight } of configs) {
    const base = { caFile: hellwall.ready.certFile, conns, inflight, warmupMs: warmupS * 1000, durationMs: durationS * 1000 };
    // Echo and check back to back per configuration, so drift in the machine hits both alike.
    const checkOn = (server: ServerChild): Promise<RunResult> => {
      const { certFile, port, token, mac } = server.ready;
      return runClient({ ...base, caFile: certFile, port, message: { code: COMMAND_CODES['token.check'], token, mac, request: 'bench.read', data: {} }, expect: 'authorized' }, [server]);
    };
    const echoRun = await runClient({ ...base, port: echo.ready.port, message: { code: COMMAND_CODES.hello }, expect: 'ok' }, [echo]);
    const checkRun = await checkOn(hellwall);
    const noLimitsRun = await checkOn(nolimits);
    let storm: ConfigResult['storm'];
    if (values.storm) {
      // 128 connections from addresses of their own, 2 attempts in flight each: far more than the
      // hashing pool takes, so it stays saturated (the rest queue or are refused) for the whole run.
      const running = await startStorm({ port: hellwall.ready.port, caFile: hellwall.ready.certFile, conns: 128, inflight: 2 });
      try {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const { certFile, port, token, mac } = hellwall.ready;
        const during = await runClient(
          { ...base, caFile: certFile, port, message: { code: COMMAND_CODES['token.check'], token, mac, request: 'bench.read', data: {} }, expect: 'authorized' },
          [hellwall],
          // With --profile too: where the server's time goes during the storm.
          { profile: Boolean(values.profile) },
        );
        storm = { check: during, answers: await running.stop() };
      } catch (err) {
        await running.stop().catch(() => undefined);
        throw err;
      }
    }
    let profiled: ConfigResult['profiled'];
    if (values.profile) {
      const echoProfiled = await runClient({ ...base, port: echo.ready.port, message: { code: COMMAND_CODES.hello }, expect: 'ok' }, [echo], { profile: true });
      const { certFile, port, token, mac } = hellwall.ready;
      const checkProfiled = await runClient(
        { ...base, caFile: certFile, port, message: { code: COMMAND_CODES['token.check'], token, mac, request: 'bench.read', data: {} }, expect: 'authorized' },
        [hellwall],
        { profile: true },
      );
      profiled = { echo: echoProfiled, check: checkProfiled };
    }
    let policy: PolicyResult | undefined;
    if (policyServers) {
      const allowAll = await checkOn(policyServers.allowAll);
      const rules50 = await checkOn(policyServers.rules50);
      policy = { allowAll, rules50, builtinCost: 1 - checkRun.rps / allowAll.rps, rules50Cost: 1 - rules50.rps / allowAll.rps };
    }
    results.push({
      conns,
      inflight,
      echo: echoRun,
      check: checkRun,
      checkNoLimits: noLimitsRun,
      ratio: checkRun.rps / echoRun.rps,
      limitsCost: 1 - checkRun.rps / noLimitsRun.rps,
      ...(policy && { policy }),
      ...(profiled && { profiled }),
      ...(storm && { storm }),
    });
    if (!values.json) process.stderr.write(`  done ${conns}x${inflight}\n`);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
