// `npm run bench -- --workers 1,2` (or node dist/bench/workers-bench.js --workers 1,2): token checks
// against the real entry point (dist/main.js) run with `workers: N`, as `npm start` runs it. The
// server CPU is the sum over every server process (the primary and its workers, read from
// /proc/<pid>/stat around the measured window; the workers' pids come from /readyz), so the CPU per
// check compares 1 and N workers fairly even where throughput cannot (the load client shares the
// machine's cores with the server).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HellwallClient } from '../client/client.js';
import { COMMAND_CODES } from '../protocol/messages.gen.js';
import type { LoadEvent, LoadResult, LoadSpec } from './load-client.js';

const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));
const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const CLIENT_JS = fileURLToPath(new URL('./load-client.js', import.meta.url));
const USER = { email: 'bench@example.com', phone: '+15550100', password: 'bench password 0123456789' };
const MAC = '02:00:5e:00:be:01';
// /proc/<pid>/stat counts CPU time in clock ticks; 100 per second on Linux everywhere that matters.
const TICKS_PER_SECOND = 100;

export interface WorkersResult {
  readonly workers: number;
  readonly conns: number;
  readonly inflight: number;
  readonly load: LoadResult;
  /** CPU of every server process over the window, in cores. */
  readonly serverCpu: number;
  /** Of which the primary's (handing out connections, answering /readyz); 0 with one process. */
  readonly primaryCpu: number;
  /** Server CPU per answered check, in microseconds. */
  readonly cpuPerCheckUs: number;
}

interface Server {
  readonly child: ChildProcess;
  readonly port: number;
  readonly opsPort: number;
  readonly dataDir: string;
  stop(): Promise<void>;
}

function env(dataDir: string, workers: number): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    HELLWALL_DATA_DIR: dataDir,
    HELLWALL_PORT: '0',
    HELLWALL_OPS_PORT: '0',
    HELLWALL_WORKERS: String(workers),
    HELLWALL_LOG_LEVEL: 'info',
    HELLWALL_LIMITS: 'false',
  };
}

async function start(workers: number): Promise<Server> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'hellwall-workers-bench-'));
  const add = spawnSync(process.execPath, [CLI, 'user', 'add', '--email', USER.email, '--phone', USER.phone], {
    env: { ...env(dataDir, 1), HELLWALL_PASSWORD: USER.password },
    encoding: 'utf8',
  });
  if (add.status !== 0) throw new Error(`user add failed: ${add.stderr}`);
  const child = spawn(process.execPath, [MAIN], { env: env(dataDir, workers), stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  return new Promise((resolve, reject) => {
    let opsPort = 0;
    const ready = workers > 1 ? 'all workers listening' : 'hellwall listening';
    const timer = setTimeout(() => reject(new Error('the server did not start within 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`the server exited (${code}) before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const l = JSON.parse(line) as { msg?: string; port?: number };
      if (l.msg === 'health and metrics listening') opsPort = l.port!;
      if (l.msg === ready) {
        clearTimeout(timer);
        resolve({ child, port: l.port!, opsPort, dataDir, stop });
      }
    });
  });
}

function getJson(port: number, urlPath: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

/** Every server process: the one started and, with workers, those /readyz lists. */
async function serverPids(server: Server): Promise<number[]> {
  const ready = (await getJson(server.opsPort, '/readyz')) as { workers?: Array<{ pid: number }> };
  return [server.child.pid!, ...(ready.workers ?? []).map((w) => w.pid)];
}

/** CPU seconds (user + system) of these processes so far. */
function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is the 14th
    // field of the line, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

async function passcodeFromOutbox(dataDir: string): Promise<string> {
  const outbox = path.join(dataDir, 'outbox');
  for (let i = 0; i < 200; i++) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
    const code = files.length > 0 ? /passcode is: ([A-Z0-9]{6})/.exec(readFileSync(path.join(outbox, files[0]!), 'utf8'))?.[1] : undefined;
    if (code) return code;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no passcode in the outbox');
}

async function login(server: Server): Promise<string> {
  const ca = readFileSync(path.join(server.dataDir, 'dev-cert.pem'));
  const client = await HellwallClient.connect({ host: '127.0.0.1', port: server.port, ca });
  try {
    const requested = await client.requestPasscode({ email: USER.email, password: USER.password, mac: MAC });
    if (requested.status !== 'ok') throw new Error(`passcode request failed: ${JSON.stringify(requested)}`);
    const passcode = await passcodeFromOutbox(server.dataDir);
    const res = await client.login({ email: USER.email, phone: USER.phone, password: USER.password, passcode, mac: MAC });
    if (res.status !== 'ok') throw new Error(`login failed: ${JSON.stringify(res)}`);
    return res.token;
  } finally {
    await client.close();
  }
}

function runLoad(spec: LoadSpec, pids: readonly number[]): Promise<{ load: LoadResult; cpu: number; primaryCpu: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT_JS], { env: { ...process.env, BENCH_SPEC: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'inherit'] });
    let from = { cpu: 0, primary: 0, at: 0 };
    let cpu = 0;
    let primaryCpu = 0;
    let load: LoadResult | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const ev = JSON.parse(line) as LoadEvent;
      if (ev.event === 'measure') from = { cpu: cpuSeconds(pids), primary: cpuSeconds(pids.slice(0, 1)), at: performance.now() };
      else if (ev.event === 'stop') {
        const s = (performance.now() - from.at) / 1000;
        cpu = (cpuSeconds(pids) - from.cpu) / s;
        primaryCpu = (cpuSeconds(pids.slice(0, 1)) - from.primary) / s;
      }
      else if (ev.event === 'result') load = ev.result;
    });
    child.once('exit', (code) => (load ? resolve({ load, cpu, primaryCpu }) : reject(new Error(`load client exited ${code} without a result`))));
  });
}

export async function measureWorkers(workers: number, shapes: ReadonlyArray<{ conns: number; inflight: number }>, seconds: number): Promise<WorkersResult[]> {
  const server = await start(workers);
  try {
    const token = await login(server);
    const pids = await serverPids(server);
    const out: WorkersResult[] = [];
    for (const { conns, inflight } of shapes) {
      const spec: LoadSpec = {
        port: server.port,
        caFile: path.join(server.dataDir, 'dev-cert.pem'),
        conns,
        inflight,
        warmupMs: 1000,
        durationMs: seconds * 1000,
        message: { code: COMMAND_CODES['token.check'], token, mac: MAC, request: 'bench.read', data: {} },
        expect: 'authorized',
      };
      const { load, cpu, primaryCpu } = await runLoad(spec, pids);
      out.push({
        workers,
        conns,
        inflight,
        load,
        serverCpu: cpu,
        primaryCpu: workers > 1 ? primaryCpu : 0,
        cpuPerCheckUs: load.rps > 0 ? (cpu / load.rps) * 1e6 : 0,
      });
    }
    return out;
  } finally {
    await server.stop();
  }
}

export function workersTable(results: readonly WorkersResult[]): string {
  const rows = [
    '| workers | conns × in flight | checks/s | p99 | server CPU (all processes) | of which the primary | CPU per check | errors |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    rows.push(
      `| ${r.workers} | ${r.conns} × ${r.inflight} | ${Math.round(r.load.rps).toLocaleString('en')} | ${r.load.p99Ms.toFixed(1)} ms | ` +
        `${r.serverCpu.toFixed(2)} cores | ${r.workers > 1 ? `${r.primaryCpu.toFixed(2)} cores` : '—'} | ${r.cpuPerCheckUs.toFixed(1)} µs | ${r.load.errors} |`,
    );
  }
  return rows.join('\n');
}

/** Parses `--workers 1,2` (and `--duration s`, `--json`) and prints the table. */
export async function workersMain(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: { workers: { type: 'string' }, duration: { type: 'string' }, json: { type: 'boolean' } },
    strict: false,
  });
  const counts = String(values.workers ?? '1,2')
    .split(',')
    .map((s) => Number(s.trim()));
  if (counts.some((n) => !Number.isSafeInteger(n) || n < 1 || n > 256)) throw new Error('--workers takes a comma-separated list of worker counts (1 to 256)');
  const seconds = values.duration === undefined ? 5 : Number(values.duration);
  const shapes = [
    { conns: 16, inflight: 1 },
    { conns: 16, inflight: 32 },
  ];
  const results: WorkersResult[] = [];
  for (const n of counts) {
    process.stderr.write(`workers bench: ${n} worker(s) …\n`);
    results.push(...(await measureWorkers(n, shapes, seconds)));
  }
  const machine = `${os.availableParallelism()} cores, load average ${os.loadavg()[0]!.toFixed(2)} at the end`;
  process.stdout.write(values.json ? `${JSON.stringify({ machine, results }, null, 2)}\n` : `${workersTable(results)}\n\n${machine}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await workersMain(process.argv.slice(2));
  process.exit(0);
}
