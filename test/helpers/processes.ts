import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './root.js';

// Tests that run the built entry points (dist/), as `npm start` and an operator do; `npm test`
// builds first.
export { ROOT };
export const CLI = path.join(ROOT, 'dist/cli.js');
export const MAIN = path.join(ROOT, 'dist/main.js');

/** A minimal environment: nothing from the developer's shell leaks into the process under test. */
export function env(dataDir: string, more: Record<string, string> = {}): NodeJS.ProcessEnv {
  // HELLWALL_OPS_PORT=0: test files run in parallel, and the default 9464 would collide.
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    HELLWALL_DATA_DIR: dataDir,
    // `client login` keeps the token here, not in the developer's ~/.hellwall-token.
    HELLWALL_TOKEN_FILE: path.join(dataDir, 'client-token'),
    HELLWALL_OPS_PORT: '0',
    // The admin console likewise (its default 7444 would collide too).
    HELLWALL_CONSOLE_PORT: '0',
    // One process, as before workers existed (the default is one per core); test/workers asks for 2.
    HELLWALL_WORKERS: '1',
    // Process tests log in many times from 127.0.0.1; the limits are tested in-process.
    HELLWALL_LIMIT_IP_PASSCODE_REQUESTS: '100000',
    HELLWALL_LIMIT_IP_LOGINS: '100000',
    HELLWALL_LIMIT_IP_FAILED_CHECKS: '100000',
    // The new-sign-in alert mails after a first login from a device: tests that read "the next
    // mail to the operator" for its passcode would race it (its own tests are in-process).
    HELLWALL_ALERT_NEW_DEVICE: 'false',
    ...more,
  };
}

export function cli(args: string[], e: NodeJS.ProcessEnv): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: e, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RunningServer {
  readonly child: ChildProcess;
  readonly port: number;
  /** The health and metrics port, when the ops listener is on. */
  readonly opsPort: number;
  /** Every log line so far (JSON); grows while the process runs. */
  readonly lines: Array<Record<string, unknown>>;
  readonly exited: Promise<number | null>;
  /** Resolves with the first log line (already seen or still to come) that has this `msg`. */
  waitForLog(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Starts dist/main.js and resolves once it logs that it listens. */
export function startServer(e: NodeJS.ProcessEnv): Promise<RunningServer> {
  const child = spawn(process.execPath, [MAIN], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  const watchers: Array<() => boolean> = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let opsPort = 0;
  const waitForLog = (msg: string, timeoutMs = 10_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line "${msg}" within ${timeoutMs} ms`)), timeoutMs);
      const look = (): boolean => {
        const found = lines.find((l) => l.msg === msg);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
        return Boolean(found);
      };
      if (!look()) watchers.push(look);
    });
  // Kept for the error below: a configuration refused at start-up is explained on stderr only.
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    if (stderr.length < 10_000) stderr += chunk.toString('utf8');
  });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        lines.push(line);
        for (let i = watchers.length - 1; i >= 0; i--) if (watchers[i]!()) watchers.splice(i, 1);
        if (line.msg === 'health and metrics listening') opsPort = line.port as number;
        if (line.msg === 'hellwall listening') resolve({ child, port: line.port as number, opsPort, lines, exited, waitForLog });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening${stderr ? `: ${stderr.trim()}` : ''}`)));
  });
}

/** One row of `hellwall audit --json` (times in ms, as on the wire). */
export interface AuditRow {
  id: number;
  at: number;
  action: string;
  outcome: string;
  userId: number | null;
  email: string | null;
  actor: string | null;
  ip: string | null;
  mac: string | null;
  sessionId: number | null;
  detail: Record<string, unknown> | null;
}

/** `hellwall audit --json` with `args`; throws unless it exits 0. */
export function auditJson(e: NodeJS.ProcessEnv, ...args: string[]): AuditRow[] {
  const r = cli(['audit', '--json', ...args], e);
  if (r.code !== 0) throw new Error(`hellwall audit ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as AuditRow[];
}
